"""The weighted reverse proxy the local backend puts in front of two model servers while a
canary runs (deployments/services/canary.py), on aiohttp's server and client.

    python -m deployments.serving.canary_proxy --stable URL --canary URL \\
        --weight-file PATH --port PORT [--host 127.0.0.1]

Every request goes, unchanged, to the stable server or to the canary; the response carries
`X-Served-By: stable|canary`. The canary's share is the whole percentage in the weight
file, re-read whenever the file changes (the backend writes it with a rename), so the
weight moves at run time without a restart or an admin port. The split is smooth and
exact, not random: of any 100 consecutive requests, `weight` go to the canary, spread
evenly (canary_split.Split, which the Ray backend's router uses too).

    GET /_canary   {"weight": w, "served": {"stable": n, "canary": m}} (the proxy's own)

Like the model server it imports neither Django nor the portal, runs in its own session and
is stopped with SIGTERM; exit status 2 for bad arguments, 3 when it cannot listen.
"""

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from deployments.serving.canary_split import CANARY, SERVED_BY, STABLE, Split

# Hop-by-hop headers (RFC 9110 §7.6.1) and those aiohttp sets itself.
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length",
}  # fmt: skip
MAX_BODY_BYTES = 10 * 1024 * 1024
EXIT_ARGUMENTS = 2
EXIT_LISTEN = 3


class WeightFile:
    """The canary's share, read again when the file's modification time or size changes."""

    def __init__(self, path: Path):
        self.path = path
        self.weight = 0
        self._seen = None
        self.refresh()

    def refresh(self) -> int:
        try:
            stat = self.path.stat()
        except OSError:
            return self.weight  # keep the last weight while the file is being replaced
        if (stat.st_mtime_ns, stat.st_size, stat.st_ino) != self._seen:
            try:
                self.weight = min(100, max(0, int(self.path.read_text().strip())))
            except (OSError, ValueError):
                return self.weight
            self._seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        return self.weight


def make_app(stable: str, canary: str, weights: WeightFile) -> web.Application:
    upstreams = {STABLE: stable.rstrip("/"), CANARY: canary.rstrip("/")}
    split = Split()

    async def client_session(app):
        app["session"] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60), auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )  # fmt: skip
        yield
        await app["session"].close()

    async def status(request):
        return web.json_response({"weight": weights.refresh(), "served": split.served})

    async def forward(request):
        side = split.next_side(weights.refresh())
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        url = upstreams[side] + request.rel_url.path_qs
        try:
            async with request.app["session"].request(
                request.method, url, headers=headers, data=body or None, allow_redirects=False
            ) as upstream:
                payload = await upstream.read()
                answer = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                answer[SERVED_BY] = side
                return web.Response(status=upstream.status, body=payload, headers=answer)
        except (TimeoutError, aiohttp.ClientError) as exc:
            message = json.dumps({"error": f"The {side} model server did not answer: {exc}"})
            return web.Response(
                status=502, text=message, content_type="application/json",
                headers={SERVED_BY: side},
            )  # fmt: skip

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.cleanup_ctx.append(client_session)
    app.router.add_get("/_canary", status)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stable", required=True, help="Base URL of the stable model server.")
    parser.add_argument("--canary", required=True, help="Base URL of the canary model server.")
    parser.add_argument("--weight-file", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    app = make_app(args.stable, args.canary, WeightFile(args.weight_file))

    async def serve():
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, args.host, args.port).start()
        except OSError as exc:
            print(f"Cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            await runner.cleanup()
            return EXIT_LISTEN
        print(f"Canary proxy pid {os.getpid()} on {args.host}:{args.port}", flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopped.set)
        await stopped.wait()
        await runner.cleanup()
        return 0

    return asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(main())
