"""factory_boy factories shared by the test suite."""

from __future__ import annotations

import hashlib

import factory

from accounts.models import User
from tenants.models import Tenant


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    settings = factory.LazyFunction(lambda: {"signup_allowed": True})


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    tenant = factory.SubFactory(TenantFactory)
    email = factory.Sequence(lambda n: f"user{n}@example.com")
    full_name = factory.Faker("name")
    role = User.Role.MEMBER
    email_verified = True
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery-1")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class ProjectFactory(factory.django.DjangoModelFactory):
    """A project of ``tenant``."""

    class Meta:
        model = "documents.Project"

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Project {n}")


class DocumentFactory(factory.django.DjangoModelFactory):
    """A document row (no file on disk, no chunks): ``pending`` unless told otherwise.

    For a document with real chunks use ``tests.chat.conftest.make_ready_document`` or upload and
    ingest (``tests.documents.conftest``).
    """

    class Meta:
        model = "documents.Document"

    owner = factory.SubFactory(UserFactory)
    tenant = factory.LazyAttribute(lambda o: o.owner.tenant)
    title = factory.Sequence(lambda n: f"Document {n}")
    sha256 = factory.Sequence(lambda n: hashlib.sha256(f"document-{n}".encode()).hexdigest())
    file = factory.LazyAttribute(lambda o: f"tenants/{o.tenant.pk}/documents/{o.sha256}.pdf")
    original_filename = factory.LazyAttribute(lambda o: f"{o.title}.pdf")
    size = 1024


class ChatSessionFactory(factory.django.DjangoModelFactory):
    """A chat session of ``user``."""

    class Meta:
        model = "chat.ChatSession"

    user = factory.SubFactory(UserFactory)
    tenant = factory.LazyAttribute(lambda o: o.user.tenant)
    title = factory.Sequence(lambda n: f"Session {n}")


class ChatMessageFactory(factory.django.DjangoModelFactory):
    """A message of ``session`` (a user's question unless ``role`` says otherwise)."""

    class Meta:
        model = "chat.Message"

    session = factory.SubFactory(ChatSessionFactory)
    tenant = factory.LazyAttribute(lambda o: o.session.tenant)
    role = "user"
    content = factory.Sequence(lambda n: f"Question {n}?")
