from django.contrib import admin
from django.urls import include, path

from generation import views as generation_views
from generation.training import views as training_views
from storyteller import views
from storyteller.stories import api_urls
from storyteller.stories import views as story_views

# The admin's lists are what operators read most; at a laptop's 1280 px the app sidebar
# took a quarter of that width from them. The index and breadcrumbs lead everywhere too.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", views.home, name="home"),
    path("staff/dashboard/", generation_views.dashboard, name="dashboard"),
    path("staff/dashboard/data", generation_views.dashboard_data, name="dashboard-data"),
    path("staff/training/<int:job_id>/data", training_views.job_data, name="training-data"),
    path("staff/training/<int:job_id>/cancel", training_views.job_cancel, name="training-cancel"),
    path("staff/training/<int:job_id>/activate", training_views.job_activate, name="training-activate"),
    path("staff/compare/", training_views.compare, name="compare"),
    path("staff/compare/<int:comparison_id>/", training_views.compare_result, name="compare-result"),
    path("staff/compare/<int:comparison_id>/data", training_views.compare_data, name="compare-data"),
    path("admin/", admin.site.urls),
    path("accounts/", include("storyteller.accounts.urls")),
    path("stories/", include("storyteller.stories.urls")),
    path("api/", include(api_urls)),
    path("api/", include("generation.api_urls")),
    path("s/<str:token>/", story_views.shared, name="shared"),
    path("healthz", views.healthz, name="healthz"),
]

handler400 = "storyteller.views.bad_request"
handler403 = "storyteller.views.permission_denied"
handler404 = "storyteller.views.page_not_found"
handler500 = "storyteller.views.server_error"
