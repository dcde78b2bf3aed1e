from rest_framework.routers import SimpleRouter

from tasks.views import TaskViewSet

router = SimpleRouter(trailing_slash="/?")
router.register("tasks", TaskViewSet, basename="task")
urlpatterns = router.urls
