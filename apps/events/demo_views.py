"""The demo shop: a few pages that use the tracking snippet like a real site would.

The views only render templates; the cart lives in the browser (localStorage) and
every event is sent by static/nudge/nudge.js with the demo source's public key.
"""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from .demo import DEMO_NEWSLETTER_KEY, DEMO_PRODUCTS, DEMO_SHOP_KEY

CURRENCY = "USD"
DESCRIPTIONS = {
    "sku-boots": "Waterproof leather boots with a grippy sole, for muddy trails.",
    "sku-jacket": "A light, packable shell that keeps the rain out and breathes.",
    "sku-socks": "Soft merino socks that stay warm when wet.",
    "sku-beanie": "A fine-knit merino beanie for cold mornings.",
}


def _shop(request: HttpRequest, template: str, **context: object) -> HttpResponse:
    shop = {"currency": CURRENCY, "products": DEMO_PRODUCTS}
    return render(
        request,
        f"demo/{template}",
        {
            "write_key": DEMO_SHOP_KEY,
            "newsletter_key": DEMO_NEWSLETTER_KEY,
            "shop": shop,
            "currency": CURRENCY,
            **context,
        },
    )


def shop_home(request: HttpRequest) -> HttpResponse:
    products = [
        {**product, "description": DESCRIPTIONS.get(product["product_id"], "")}
        for product in DEMO_PRODUCTS
    ]
    return _shop(request, "home.html", products=products)


def product_detail(request: HttpRequest, product_id: str) -> HttpResponse:
    product = next((p for p in DEMO_PRODUCTS if p["product_id"] == product_id), None)
    if product is None:
        raise Http404("no such product")
    description = DESCRIPTIONS.get(product_id, "")
    return _shop(request, "product.html", product=product, description=description)


def cart(request: HttpRequest) -> HttpResponse:
    return _shop(request, "cart.html")


def checkout(request: HttpRequest) -> HttpResponse:
    return _shop(request, "checkout.html")


def order_placed(request: HttpRequest) -> HttpResponse:
    return _shop(request, "thanks.html", order_id=request.GET.get("order", "")[:64])


def consent(request: HttpRequest) -> HttpResponse:
    """A page whose snippet waits for a cookie-banner answer (requireConsent)."""
    return _shop(request, "consent.html")
