"""The docker SDK, imported when a container is first used, not when Headwater starts.

The SDK, with requests and urllib3 under it, takes about a tenth of a second to import:
`headwater up` paid it at every start (issue 12), whether or not any flow runs a
container. The runner modules reach the SDK through these functions; an `except`
clause evaluates its classes only when an exception reaches it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import docker


def failures(*others: type[Exception]) -> tuple[type[Exception], ...]:
    """What a call to the engine raises when it fails (the SDK's errors and the HTTP
    ones), and `others`."""
    import requests
    from docker.errors import DockerException

    return (DockerException, requests.RequestException, *others)


def not_found() -> type[Exception]:
    from docker.errors import NotFound

    return NotFound


def image_not_found() -> type[Exception]:
    from docker.errors import ImageNotFound

    return ImageNotFound


def api_error() -> type[Exception]:
    from docker.errors import APIError

    return APIError


def client(**options: Any) -> docker.APIClient:
    import docker

    return docker.APIClient(**options)


def options_from_env() -> dict[str, Any]:
    """DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as the docker CLI reads them."""
    import docker

    return dict(docker.utils.kwargs_from_env())


def repository_and_tag(image: str) -> tuple[str, str | None]:
    from docker.utils import parse_repository_tag

    repository, tag = parse_repository_tag(image)
    return repository, tag
