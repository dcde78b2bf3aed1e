from rest_framework.routers import SimpleRouter

from documents.views import DocumentViewSet, ProjectViewSet, SearchViewSet

router = SimpleRouter(trailing_slash="/?")
router.register("projects", ProjectViewSet, basename="project")
router.register("documents", DocumentViewSet, basename="document")
router.register("search", SearchViewSet, basename="search")
urlpatterns = router.urls
