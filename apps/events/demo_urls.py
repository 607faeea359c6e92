from django.urls import path

from . import demo_views

app_name = "demo"

urlpatterns = [
    path("shop/", demo_views.shop_home, name="shop"),
    path("shop/p/<str:product_id>/", demo_views.product_detail, name="product"),
    path("shop/cart/", demo_views.cart, name="cart"),
    path("shop/checkout/", demo_views.checkout, name="checkout"),
    path("shop/thanks/", demo_views.order_placed, name="thanks"),
    path("consent/", demo_views.consent, name="consent"),
]
