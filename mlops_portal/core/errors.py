class Conflict(Exception):
    """The request is valid but the object's current state forbids it (e.g. approving a
    deployment someone else approved a moment ago). The API answers 409; pages show it."""
