"""The running gateway's parts, built once per app in its lifespan and closed in reverse order.

Nothing here lives at module level: tests build as many independent gateways as they like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slipstream.auth.admin import AdminAuth
from slipstream.auth.secret import load_or_create_server_secret
from slipstream.auth.service import KeyService
from slipstream.auth.watcher import AuthWatcher
from slipstream.catalog import Catalog, builtin_models
from slipstream.config import Settings
from slipstream.ledger.recorder import UsageRecorder
from slipstream.observability.metrics import Metrics
from slipstream.providers.registry import ProviderDeps, ProviderRegistry
from slipstream.runners.supervisor import Supervisor
from slipstream.serving.chat import ChatService
from slipstream.store.db import Database

log = logging.getLogger(__name__)


def build_catalog(settings: Settings) -> Catalog:
    return Catalog([*(builtin_models() if settings.include_builtin_models else []), *settings.models])


@dataclass(eq=False)
class Services:
    settings: Settings
    catalog: Catalog
    db: Database
    keys: KeyService
    admin: AdminAuth
    recorder: UsageRecorder
    supervisor: Supervisor
    providers: ProviderRegistry
    chat: ChatService
    metrics: Metrics
    first_admin_token: str | None = None
    auth_watcher: AuthWatcher | None = None

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = load_or_create_server_secret(settings.data_dir)
        catalog = build_catalog(settings)
        ledger = settings.ledger
        db = await Database.open(settings.resolved_database_url, sqlite_fsync=ledger.durability == "fsync")
        keys = KeyService(db, secret)
        await keys.start()
        admin, first_token = await AdminAuth.ensure(db, secret)
        auth_watcher = AuthWatcher(db, keys, admin)  # other replicas' key and token changes
        await auth_watcher.start()
        recorder = UsageRecorder(
            db,
            durable=ledger.durability != "buffered",
            max_pending=ledger.max_pending,
            commit_timeout=ledger.commit_timeout_s,
        )
        await recorder.start()
        metrics = Metrics()
        supervisor = Supervisor(settings.engine)
        supervisor.on_cold_start = metrics.observe_cold_start
        providers = ProviderRegistry(ProviderDeps(supervisor))
        providers.load_plugins()
        chat = ChatService(catalog, providers, recorder, metrics)
        services = cls(settings, catalog, db, keys, admin, recorder, supervisor, providers, chat, metrics, first_token)
        services.auth_watcher = auth_watcher
        return services

    async def aclose(self) -> None:
        """Stop taking work, then flush what was metered before the database goes away."""
        await self.providers.aclose()
        await self.supervisor.aclose()
        await self.recorder.aclose()
        if self.auth_watcher is not None:
            await self.auth_watcher.aclose()
        await self.keys.aclose()
        await self.db.aclose()
