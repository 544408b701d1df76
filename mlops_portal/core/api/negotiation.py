"""Content negotiation that answers the usual API request without parsing its Accept
header: DRF parses it into media types (and builds `request.headers` from the whole
environ) on every request, about 5 % of a small GET's CPU (bench/profile_endpoint.py)."""

from rest_framework.negotiation import DefaultContentNegotiation

# Accept headers whose answer is the first renderer, with its own media type, as DRF's
# negotiation decides: no header or `*/*` (anything), or exactly that renderer's type.
ANY = (None, "*/*")


class PortalContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        accept = request.META.get("HTTP_ACCEPT")
        first = renderers[0] if renderers else None
        if (
            first is not None
            and (accept in ANY or accept == first.media_type)
            and not format_suffix
            and not request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        ):
            return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
