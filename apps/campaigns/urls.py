from django.urls import path

from . import optin_views, views

app_name = "campaigns"

urlpatterns = [
    path("u/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("u/<str:token>/preferences/", views.preferences, name="preferences"),
    path("m/<str:token>/", views.view_in_browser, name="view"),
    path("c/<str:token>/", views.click, name="click"),
    path("confirm/<str:token>/", optin_views.confirm, name="confirm"),
]
