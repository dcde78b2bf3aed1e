from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class TenantsConfig(AppConfig):
    name = "tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tenants.lookup import forget_tenants
        from tenants.models import Tenant

        # a saved or deleted tenant is not served from the tenant middleware's memory (tenants.lookup)
        post_save.connect(forget_tenants, sender=Tenant, dispatch_uid="tenants.lookup.saved")
        post_delete.connect(forget_tenants, sender=Tenant, dispatch_uid="tenants.lookup.deleted")
