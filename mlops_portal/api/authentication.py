from rest_framework import authentication, exceptions

from mlops_portal.services import authenticate_token


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token <secret>` or `Authorization: Bearer <secret>`."""

    keywords = ("token", "bearer")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: use 'Token <secret>'."
            )
        user = authenticate_token(header[1])
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        return user, user.token_id

    def authenticate_header(self, request):
        return "Token"
