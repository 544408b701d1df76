"""Questions deployments asks of the apps built on it.

deployments imports no app above it (import-linter keeps it so), yet its approval policy
asks "are there blocking incidents?" and its pages show a target's health. An app answers
a question by registering a function in its `AppConfig.ready()` (monitoring does, in
`monitoring.integration`); unanswered, `ask` returns an empty list, so deployments also
works alone."""

from collections.abc import Callable

QUESTIONS = {
    "blocking_incidents": "deployment → the unresolved incidents that make approving it "
    "need a written override (asked for production targets only)",
    "open_incidents": "deployment → unresolved incidents on its target or model",
    "target_health": "target → [{'check': HealthCheck, 'uptime': float | None}]",
}

_answers: dict[str, Callable] = {}


def answer(question: str, function: Callable) -> None:
    """Let `function` answer `question` (the last registration wins)."""
    if question not in QUESTIONS:
        raise ValueError(f"Unknown question {question!r}; add it to hooks.QUESTIONS.")
    _answers[question] = function


def ask(question: str, *args) -> list:
    """The registered answer to `question` about `args`, or [] when no app answers it."""
    if question not in QUESTIONS:
        raise ValueError(f"Unknown question {question!r}; add it to hooks.QUESTIONS.")
    function = _answers.get(question)
    return function(*args) if function is not None else []
