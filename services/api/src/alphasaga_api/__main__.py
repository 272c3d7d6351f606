"""``python -m alphasaga_api``: the api service under uvicorn. Exits 2 with one line when a
setting is missing (production without a signing key) or a server cannot be reached."""

from __future__ import annotations

import asyncio
import sys

from alphasaga_shared import runner, telemetry
from alphasaga_shared.config import ConfigError, Settings

from .settings import ApiSettings


async def _servers_reachable(redis_url: str, database_url: str, settings: Settings, api: ApiSettings) -> None:
    store = await runner.wait_for_servers(redis_url, database_url, settings, "api")
    await store.close()
    if settings.on_jetstream and api.limit_store(settings) == "redis":  # a Redis for the rate limits alone
        await runner.check_redis(settings.redis_url or "", settings.connect_timeout_s)


def main() -> None:
    import uvicorn

    try:
        settings = Settings()
    except ConfigError as exc:  # a wrong ALPHASAGA_* value: one line, as every service says it
        print(f"alphasaga-api: {exc}", file=sys.stderr)
        sys.exit(2)
    api = ApiSettings()
    telemetry.setup_logging("api", settings.log_level)
    try:
        redis_url, database_url = runner.required_urls(settings)
        api.limit_store(settings)  # a store that cannot work refuses here, not at the first request
        from .app import create_app

        app = create_app(settings, api)
        # Reach the servers first (waiting ALPHASAGA_WAIT_FOR_SERVERS_S for them, as every
        # service does): an unreachable one is a line and exit 2, not a traceback.
        asyncio.run(_servers_reachable(redis_url, database_url, settings, api))
    except (ConfigError, runner.StartupError) as exc:
        print(f"alphasaga-api: {exc}", file=sys.stderr)
        sys.exit(2)
    config = uvicorn.Config(
        app,
        host=api.host,
        port=api.listen_port(settings),
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        **api.proxy_headers(),
    )
    server = uvicorn.Server(config)
    original_startup = server.startup

    async def startup(sockets: object = None) -> None:
        await original_startup(sockets)  # type: ignore[arg-type]
        if server.started:  # the line the local stack waits for, as every service prints it
            port = server.servers[0].sockets[0].getsockname()[1] if server.servers else api.listen_port(settings)
            print(f"alphasaga-api: ready on http://{api.host}:{port}", file=sys.stderr, flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run()
    if not server.started:
        sys.exit(2)


if __name__ == "__main__":
    main()
