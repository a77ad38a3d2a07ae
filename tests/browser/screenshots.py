"""Take the README's console screenshots from a generated world: `python -m tests.browser.screenshots`.

Builds a world (as the e2e tests do), scores churn twice more so the risk history has a
shape, serves it, signs in as an admin in headless Chromium at 1280x800, and writes
`docs/img/console-overview.png` and `docs/img/console-customer.png` (palette PNGs, a few
dozen kilobytes each).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select

from nextoffer.store.engine import make_engine
from nextoffer.store.schema import ChurnScore
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, password
from tests.e2e.server import ROOT, ApiServer, build_world, run_cli, world_env


def shrink(path: Path) -> None:
    """Re-save as a 256-colour PNG: text and flat colours survive, the size drops 3-4x."""
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)


def main() -> None:
    """Build, serve, shoot."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--customers", type=int, default=3000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        var_dir = Path(tmp)
        database_url = f"sqlite:///{var_dir / 'nextoffer.db'}"
        build_world(var_dir, database_url, customers=args.customers)
        env = world_env(var_dir, database_url)
        for _ in range(2):
            run_cli(env, "train", "--models", "churn")
        run_cli(
            env,
            "users",
            "create",
            "admin1",
            "--role",
            "admin",
            "--password-stdin",
            stdin=password("admin") + "\n",
        )
        engine = make_engine(database_url)
        with engine.connect() as conn:
            latest = select(func.max(ChurnScore.scored_at)).scalar_subquery()
            customer = conn.execute(
                select(ChurnScore.customer_id)
                .where(ChurnScore.scored_at == latest, ChurnScore.band == "high")
                .order_by(ChurnScore.customer_id)
                .limit(1)
            ).scalar_one()
        engine.dispose()
        server = ApiServer({**env, "NEXTOFFER_CONSOLE_SECURE_COOKIES": "false"}, var_dir / "log")
        server.start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport=VIEWPORT, base_url=server.url)
                page.goto("/login")
                page.fill("input[name=username]", "admin1")
                page.fill("input[name=password]", password("admin"))
                page.click("form[action='/login'] button[type=submit]")
                page.wait_for_url("**/")
                args.out.mkdir(parents=True, exist_ok=True)
                for name, path in (("overview", "/"), ("customer", f"/customers/{customer}")):
                    page.goto(path)
                    target = args.out / f"console-{name}.png"
                    page.screenshot(path=str(target))
                    shrink(target)
                    print(f"{target}: {target.stat().st_size // 1024} KB")
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
