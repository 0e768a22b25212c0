"""Every expression in a flow must parse; the shortcut for known-good tags stays exact."""

from __future__ import annotations

from headwater.daemon.flow.validate import validate_text


def flow(*messages: str) -> str:
    tasks = "".join(
        f"  - id: t{i}\n    type: core.log.Log\n    message: {m!r}\n"
        for i, m in enumerate(messages)
    )
    inputs = "inputs: [{id: name, type: STRING}, {id: x, type: STRING}]\n"  # last: lines stay
    return f"id: f\nnamespace: n\ntasks:\n{tasks}{inputs}"


def errors(text: str) -> list[str]:
    return [str(d) for d in validate_text(text, "f.yaml").diagnostics]


def test_a_bad_tag_beside_a_known_good_one_is_still_found() -> None:
    assert errors(flow("{{ inputs.name }}")) == []
    found = errors(flow("{{ inputs.name }}", "{{ inputs.name }} and {{ inputs.name | nope }}"))
    assert len(found) == 1
    assert "unknown filter 'nope'" in found[0]
    assert found[0].startswith("f.yaml:9:")


def test_a_known_good_tag_inside_an_unclosed_block_is_not_trusted() -> None:
    assert errors(flow("{{ inputs.x }}")) == []
    found = errors(flow("{% if true %}{{ inputs.x }}"))
    assert len(found) == 1
    assert "unclosed '{% if %}'" in found[0]


def test_tags_with_braces_or_escapes_in_strings_are_parsed_every_time() -> None:
    assert errors(flow("{{ 'it\\'s' }}")) == []
    assert len(errors(flow("{{ 'it\\'s }}"))) == 1


def test_braces_inside_a_tag_are_parsed_every_time() -> None:
    assert errors(flow("{{ '}}' }}")) == []
    found = errors(flow("{{ '}} and more"))
    assert len(found) == 1
    assert "invalid expression" in found[0]
