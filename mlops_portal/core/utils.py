from contextlib import contextmanager

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError


def add_service_errors(form, exc: ValidationError) -> None:
    """Show a service's ValidationError on `form`: on its field when the form has it."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, messages in exc.message_dict.items():
        target = field if field in form.fields else None
        for message in messages:
            shown = message if target or field == NON_FIELD_ERRORS else f"{field}: {message}"
            form.add_error(target, shown)


@contextmanager
def service_errors_on(form):
    """Run a form's service call: a ValidationError it raises ends the block and shows on
    `form`; the rest of the block (a message, a redirect) runs only when the call passed."""
    try:
        yield
    except ValidationError as exc:
        add_service_errors(form, exc)
