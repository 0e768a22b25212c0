"""The Flask status page and JSON API."""
