"""MLflow's error body, `{"error_code", "message"}`, with the status MLflow gives each code."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import JsonResponse

STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_STATE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "REQUEST_LIMIT_EXCEEDED": 429,
}


class MlflowError(Exception):
    """A refusal in MLflow's terms; `response()` is what the client receives."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message

    def response(self) -> JsonResponse:
        body = {"error_code": self.code, "message": self.message}
        response = JsonResponse(body, status=STATUS[self.code])
        if self.code == "UNAUTHENTICATED":
            response["WWW-Authenticate"] = 'Basic realm="mlflow"'
        return response


def invalid(message: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", message)


def missing(message: str) -> MlflowError:
    return MlflowError("RESOURCE_DOES_NOT_EXIST", message)


def from_service(exc: Exception) -> MlflowError:
    """A service's refusal (ValidationError, PermissionDenied) as MLflow's error."""
    if isinstance(exc, PermissionDenied):
        return MlflowError("PERMISSION_DENIED", str(exc) or "Permission denied.")
    messages = []
    if isinstance(exc, ValidationError) and hasattr(exc, "message_dict"):
        for field, texts in exc.message_dict.items():
            messages.extend(f"{field}: {text}" for text in texts)
    else:
        messages.extend(getattr(exc, "messages", [str(exc)]))
    text = " ".join(messages)
    if "already exists" in text:
        return MlflowError("RESOURCE_ALREADY_EXISTS", text)
    return invalid(text)
