"""Every default and limit, named once, with what it is for."""

from __future__ import annotations

# -- flow files ----------------------------------------------------------------------
MAX_FLOW_FILE_BYTES = 1024 * 1024  # a flow file over 1 MiB is refused (repository contract)
MAX_NAMESPACE_FILE_BYTES = 10 * 1024 * 1024  # a namespace file (`_files/`) over 10 MiB is refused
MAX_YAML_DEPTH = 200  # deeper nesting is refused: no real flow needs it, and it guards the stack
MAX_YAML_NODES = 200_000  # nodes after alias expansion; a "billion laughs" file stops here
# Below this many structural characters a file cannot nest deeper than MAX_YAML_DEPTH*25,
# which libyaml composes safely, so the exact (slower) depth check is skipped.
YAML_DEPTH_PRECHECK_CHARS = 5_000

FLOW_FILE_SUFFIXES = (".yaml", ".yml")
NAMESPACE_FILES_DIR = "_files"
IGNORE_FILE = ".headwaterignore"
DEFAULT_FLOWS_DIR = "flows"

# -- flow language -------------------------------------------------------------------
FLOW_ID_MAX = 100  # characters in a flow id
NAMESPACE_MAX = 150  # characters in a namespace
SUGGESTION_CUTOFF = 0.6  # difflib ratio above which a "did you mean" is offered
TYPE_SUGGESTION_CUTOFF = 0.8  # type names are long and alike: only close ones are offered

# -- task logs -----------------------------------------------------------------------
LOG_MAX_LINES = 1_000_000  # log lines one attempt of a task run may store
LOG_MAX_BYTES = 100 * 1024 * 1024  # bytes of log text one attempt of a task run may store

# -- the command line ----------------------------------------------------------------
SERVER_VARIABLE = "HEADWATER_SERVER"  # the daemon's URL, when no --server is given
SERVER = "http://127.0.0.1:8080"  # where commands find a daemon by default: `headwater up`'s own
