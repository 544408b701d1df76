from django.core.exceptions import NON_FIELD_ERRORS, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from mlops_portal.core import security_log
from mlops_portal.core.errors import Conflict


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "too_large"


class UploadTooLarge(exceptions.ValidationError):
    """A file refused by the upload handler while it arrived: 413, naming the field."""

    status_code = 413


class ConflictError(exceptions.APIException):
    status_code = 409
    default_detail = "The object's current state does not allow this."
    default_code = "conflict"


def exception_handler(exc, context):
    """Services raise Django's ValidationError (400 naming fields) or Conflict (409)."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(validation_error_detail(exc))
    elif isinstance(exc, Conflict):
        exc = ConflictError(str(exc))
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(str(exc))
    response = drf_exception_handler(exc, context)
    if response is not None and response.status_code == 403:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        security_log.permission_denied(context["request"], str(detail), status=403)
    return response


def validation_error_detail(exc: DjangoValidationError) -> dict[str, list[str]]:
    if not hasattr(exc, "error_dict"):
        return {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
    return {
        (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): messages
        for field, messages in exc.message_dict.items()
    }
