from django.contrib import admin
from django.urls import include, path

from generation import views as generation_views
from storyteller import views
from storyteller.stories import api_urls
from storyteller.stories import views as story_views

urlpatterns = [
    path("", views.home, name="home"),
    path("staff/dashboard/", generation_views.dashboard, name="dashboard"),
    path("staff/dashboard/data", generation_views.dashboard_data, name="dashboard-data"),
    path("admin/", admin.site.urls),
    path("accounts/", include("storyteller.accounts.urls")),
    path("stories/", include("storyteller.stories.urls")),
    path("api/", include(api_urls)),
    path("api/", include("generation.api_urls")),
    path("s/<str:token>/", story_views.shared, name="shared"),
    path("healthz", views.healthz, name="healthz"),
]
