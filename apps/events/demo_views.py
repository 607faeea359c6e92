from django.http import HttpRequest, HttpResponse


def shop_home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("demo shop")
