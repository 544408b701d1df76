from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class StandardPagination(PageNumberPagination):
    """`?page=` and `?page_size=` (up to 200), held to the types the schema declares: a page
    or a size that is not a positive integer (or a size over the maximum) is a 400 naming
    the parameter, where DRF would quietly fall back to the default; a page past the last
    one is a 404."""

    page_size_query_param = "page_size"
    max_page_size = 200
    last_page_strings = ()

    def get_page_size(self, request):
        if self.page_size_query_param not in request.query_params:
            return self.page_size
        return self.positive_int(request, self.page_size_query_param, self.max_page_size)

    def get_page_number(self, request, paginator):
        if self.page_query_param not in request.query_params:
            return 1
        return self.positive_int(request, self.page_query_param)

    @staticmethod
    def positive_int(request, name: str, most: int | None = None) -> int:
        text = request.query_params[name]
        if not text.isascii() or not text.isdigit() or int(text) < 1:
            raise ValidationError({name: ["Use a whole number of 1 or more."]})
        value = int(text) if len(text) <= 18 else 10**18  # int() refuses 4,300+ digits
        if most is not None and value > most:
            raise ValidationError({name: [f"Use at most {most}."]})
        return value

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = self.max_page_size
        return parameters
