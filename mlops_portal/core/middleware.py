from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired


class LoginRequiredMiddleware(DjangoLoginRequired):
    """Redirect anonymous browsers to the login page, except on the REST API.

    `/api/v1/` authenticates tokens itself and must answer 401 JSON, never a login redirect.
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/v1/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
