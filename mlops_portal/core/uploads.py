"""Upload size limits enforced while the body arrives, not after it is stored.

`SizeLimitUploadHandler` comes first in FILE_UPLOAD_HANDLERS, so it sees every chunk before
Django's memory or temporary-file handler keeps it:
- a multipart body whose Content-Length passes the limit is refused when its first file
  part begins, before one byte of the file is read (the form fields before it, such as the
  CSRF token, are read, so a page can still show its form with the error);
- a file whose bytes received pass the limit (a Content-Length that understated the body)
  stops the parse at that chunk, so at most the limit plus one chunk reaches /tmp.

A refusal is not an exception the user would see as a 500: the handler notes it on the
request (`refusal(request)`), hands over no file, and the view answers with a field error.
The limit is ARTIFACT_MAX_BYTES, the largest file the portal accepts; smaller per-kind
limits (images on doc pages) are still checked by their services. Bodies without files are
bounded by DATA_UPLOAD_MAX_MEMORY_SIZE (Django for forms, mlops_portal.core.api.parsers for JSON).
"""

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

# Room for the form fields sent beside the file (metrics, sample input, boundaries).
FORM_OVERHEAD_BYTES = 1024 * 1024
ATTRIBUTE = "upload_refusal"


def limit_message() -> str:
    return (
        f"The upload is larger than the limit of {settings.ARTIFACT_MAX_BYTES} bytes "
        "(ARTIFACT_MAX_BYTES)."
    )


def refusal(request) -> str | None:
    """Why the upload handler refused this request's upload, or None."""
    return getattr(request, ATTRIBUTE, None)


class SizeLimitUploadHandler(FileUploadHandler):
    declared_too_large = False

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        limit = settings.ARTIFACT_MAX_BYTES + FORM_OVERHEAD_BYTES
        self.declared_too_large = content_length > limit
        return None

    def new_file(self, *args, **kwargs):
        # The fields before the first file (the CSRF token of a page form) are still read,
        # so the page can answer with its form; not one byte of the file is.
        if self.declared_too_large:
            self.refuse()
        super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > settings.ARTIFACT_MAX_BYTES:
            self.refuse()  # the Content-Length understated the body, or there was none
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler (memory or temporary file) makes the file

    def refuse(self):
        setattr(self.request, ATTRIBUTE, limit_message())
        # Read no more of the body; what the next handlers got so far is discarded.
        raise StopUpload(connection_reset=True)


def ask_again_for_files(form, request) -> None:
    """A form shown again with errors comes back with its file inputs empty (a browser
    cannot refill them): say so under each file field whose file arrived, naming it."""
    if not form.errors:
        return
    for name, upload in request.FILES.items():
        if name in form.fields and name not in form.errors:
            form.add_error(
                name,
                f"Choose “{upload.name}” again: a browser cannot keep a chosen file "
                "when the form comes back with an error.",
            )
