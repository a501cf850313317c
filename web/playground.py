"""The GraphiQL playground, served with its scripts and styles from the API itself.

Strawberry's page loads GraphiQL, React and the explorer plugin from a public CDN; behind a
corporate proxy or offline that is a blank "Loading...". `fetch_assets` (run by `make install`)
gets the exact files the installed strawberry page names from the npm registry with `npm pack`,
checks each against the integrity hash the page declares, and keeps them with their licences in
a git-ignored folder. `playground_page` rewrites the page to load them from our own route and to
open with an example of this API.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from strawberry.http.ides import get_graphql_ide_html

CDN = "https://unpkg.com/"
ASSET_DIR = Path(__file__).resolve().parent / "playground_assets"
# Kept beside each package's files: what a licence requires to travel with the code.
_LICENCE_FILE = re.compile(r"package/(LICEN[CS]E|COPYING)(\.\w+)?", re.IGNORECASE)
_ASSET = re.compile(
    r'(?:src|href)="https://unpkg\.com/(?P<package>(?:@[^/@"]+/)?[^/@"]+)@(?P<version>[^/"]+)/'
    r'(?P<path>[^"]+)"(?:\s+integrity="(?P<integrity>[^"]+)")?'
)

EXAMPLE_DOCUMENT = """\
# The account privacy settings API. Run one operation at a
# time: the run button asks which (or put the cursor inside
# one and press Ctrl-Enter).
#
# 1. SignIn with the email and password in the Variables
#    pane below (`make run` prints a demo account). The
#    password stays there, never in the page address; the
#    session cookie it sets goes with every later request.
mutation SignIn($email: String!, $password: String!) {
  login(input: { email: $email, password: $password }) {
    account { email }
    errors { field code message }
  }
}

# 2. Me: what the API holds about you.
query Me {
  me {
    email
    displayName
    communicationPreferences { channel topic enabled locked }
  }
}

# 3. Turn the newsletter by email on (false turns it off).
mutation ToggleNewsletter {
  setCommunicationPreference(
    input: { channel: EMAIL, topic: NEWSLETTER, enabled: true }
  ) {
    account { communicationPreferences { channel topic enabled } }
    errors { field code message }
  }
}
"""
EXAMPLE_VARIABLES = '{\n  "email": "demo@example.com",\n  "password": ""\n}'
# GraphiQL keeps its editors in localStorage, where any script of the origin, and whoever uses the
# browser next, can read them. Through this storage it keeps documents, tabs and history, never
# variables (a password), headers (a token) or answers (personal data); what an older page left
# there is cleaned when the page opens.
KEPT_STORAGE = """
      const SECRET_KEYS = ["variables", "headers", "response"];
      function withoutSecrets(value) {
        if (Array.isArray(value)) return value.map(withoutSecrets);
        if (value === null || typeof value !== "object") return value;
        return Object.fromEntries(Object.entries(value).map(([key, item]) =>
          [key, SECRET_KEYS.includes(key) ? null : withoutSecrets(item)]));
      }
      const ours = () => Object.keys(localStorage).filter((key) => key.startsWith("graphiql:"));
      const KEPT_STORAGE = {
        getItem: (key) => localStorage.getItem(key),
        setItem(key, value) {
          if (SECRET_KEYS.some((name) => key === "graphiql:" + name)) return;
          let kept = value;
          try {
            kept = JSON.stringify(withoutSecrets(JSON.parse(value)));
          } catch (notJson) {}
          localStorage.setItem(key, kept);
        },
        removeItem: (key) => localStorage.removeItem(key),
        get length() { return ours().length; },
        clear() { ours().forEach((key) => localStorage.removeItem(key)); },
      };
      for (const key of ours()) {
        const value = localStorage.getItem(key);
        localStorage.removeItem(key);
        KEPT_STORAGE.setItem(key, value);
      }
      // Nor are they taken from the address, or written back into it.
      delete parameters.headers;
      delete parameters.variables;
"""


class PlaygroundError(RuntimeError):
    """Strawberry's page or its assets are not what this module expects."""


@dataclass(frozen=True)
class Asset:
    """One script or stylesheet the page loads: a file of a package at a version."""

    package: str
    version: str
    path: str
    integrity: str | None

    @property
    def local_path(self) -> str:
        return f"{self.package}@{self.version}/{self.path}"


def assets(page: str | None = None) -> list[Asset]:
    """Every file strawberry's GraphiQL page loads from the CDN."""
    page = get_graphql_ide_html("graphiql") if page is None else page
    return [
        Asset(match["package"], match["version"], match["path"], match["integrity"])
        for match in _ASSET.finditer(page)
    ]


def _integrity_of(data: bytes, integrity: str) -> bool:
    algorithm, _, expected = integrity.partition("-")
    digest = hashlib.new(algorithm, data).digest()
    return base64.b64encode(digest).decode() == expected


def missing_assets(directory: Path = ASSET_DIR) -> list[Asset]:
    """The page's files not yet in `directory`, or not the bytes the page expects."""
    missing = []
    for asset in assets():
        file = directory / asset.local_path
        if not file.is_file() or (
            asset.integrity and not _integrity_of(file.read_bytes(), asset.integrity)
        ):
            missing.append(asset)
    return missing


def fetch_assets(directory: Path = ASSET_DIR) -> list[Asset]:
    """Get the missing files with `npm pack`, each package with its licence; what was fetched."""
    wanted = missing_assets(directory)
    by_package: dict[tuple[str, str], list[Asset]] = {}
    for asset in wanted:
        by_package.setdefault((asset.package, asset.version), []).append(asset)
    for (package, version), files in by_package.items():
        with tempfile.TemporaryDirectory() as scratch:
            # The names and versions come from strawberry's own page, not from a caller.
            subprocess.run(  # noqa: S603
                ["npm", "pack", f"{package}@{version}", "--silent", "--pack-destination", scratch],  # noqa: S607
                check=True,
                stdout=subprocess.DEVNULL,
            )
            (tarball,) = Path(scratch).glob("*.tgz")
            with tarfile.open(tarball) as archive:
                contents = {member.name: member for member in archive.getmembers()}
                kept = [name for name in contents if _LICENCE_FILE.fullmatch(name)]
                kept.append("package/package.json")
                for asset in files:
                    data = _read(archive, contents, f"package/{asset.path}")
                    if asset.integrity and not _integrity_of(data, asset.integrity):
                        raise PlaygroundError(
                            f"{package}@{version}/{asset.path} from npm does not match the "
                            "integrity hash strawberry's page declares"
                        )
                    _write(directory / asset.local_path, data)
                for name in kept:
                    data = _read(archive, contents, name)
                    _write(directory / f"{package}@{version}" / name.removeprefix("package/"), data)
    return wanted


def _read(archive: tarfile.TarFile, contents: dict[str, tarfile.TarInfo], name: str) -> bytes:
    member = contents.get(name)
    extracted = archive.extractfile(member) if member is not None else None
    if extracted is None:
        raise PlaygroundError(f"{name} is not in the package npm gave")
    return extracted.read()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@functools.cache
def content_security_policy(page: str) -> str:
    """The Content-Security-Policy of one of our pages: files from the API itself, and of inline
    scripts only the blocks the page holds (by their SHA-256), so a script that found its way into
    the page some other way does not run. Connections only to the API. Inline styles are allowed:
    GraphiQL's editors set them as they lay out text."""
    scripts = [
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(page)
    ]
    return "; ".join(
        [
            "default-src 'none'",
            " ".join(["script-src 'self'", *scripts]),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


def _replace_once(page: str, pattern: str, replacement: str) -> str:
    changed, count = re.subn(pattern, lambda _: replacement, page, flags=re.DOTALL)
    if count != 1:
        raise PlaygroundError(
            f"strawberry's GraphiQL page changed ({pattern!r} found {count} times); "
            "update web/playground.py"
        )
    return changed


# Built once per process, when every file is there (checking them reads 4 MB).
_pages: dict[str, str] = {}


def playground_page(assets_path: str) -> str:
    """Strawberry's GraphiQL page, loading its files from `assets_path` and opening with our
    example. Variables and headers are kept out of the page address (a password typed there
    would otherwise land in the browser's history and in proxy logs) and out of the browser's
    storage, and headers are never taken from the address; the query still goes in it, so a
    link can share one."""
    if assets_path in _pages:
        return _pages[assets_path]
    if missing := missing_assets():
        names = ", ".join(sorted({f"{asset.package}@{asset.version}" for asset in missing}))
        return (
            "<!doctype html><title>Playground not installed</title>"
            f"<p>The playground's scripts are missing ({html.escape(names)}). Run "
            "<code>make install</code>, which fetches them with npm.</p>"
        )
    page = get_graphql_ide_html("graphiql").replace(CDN, assets_path.rstrip("/") + "/")
    page = _replace_once(
        page,
        r"const EXAMPLE_QUERY = `.*?`;",
        f"const EXAMPLE_QUERY = {json.dumps(EXAMPLE_DOCUMENT)};\n"
        f"      const EXAMPLE_VARIABLES = {json.dumps(EXAMPLE_VARIABLES)};",
    )
    page = _replace_once(page, r"parameters\.variables,", "EXAMPLE_VARIABLES,")
    page = _replace_once(page, r"\s*updateURL\(\{ variables: newVariables \}\);", "")
    # Headers from the address would let a link sign the visitor in as someone else (the
    # sender), so that what they then do lands in that account: the editor starts empty.
    page = _replace_once(page, r"React\.useState\(parameters\.headers\)", 'React.useState("")')
    page = _replace_once(
        page,
        r"shouldPersistHeaders: true,",
        "shouldPersistHeaders: false,\n          storage: KEPT_STORAGE,",
    )
    page = _replace_once(
        page,
        r"\n(\s*)function GraphiQLWithExplorer\(\)",
        f"{KEPT_STORAGE}\n      function GraphiQLWithExplorer()",
    )
    page = _replace_once(page, r"<title>.*?</title>", "<title>Privacy settings API</title>")
    if re.search(r'(?:src|href)="(?:https?:)?//', page):
        raise PlaygroundError("the playground page still loads something from another host")
    _pages[assets_path] = page
    return page


STAFF_SIGN_IN = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Privacy settings API: staff sign-in</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 28rem; margin: 4rem auto; padding: 0 1rem; }
label { display: block; margin: 1rem 0; }
input { display: block; width: 100%; padding: .4rem; }
</style>
</head>
<body>
<h1>Staff sign-in</h1>
<p>In production the playground is for support staff and privacy officers. <!--reason--></p>
<form id="sign-in">
<label>Email <input name="email" type="email" autocomplete="username" required></label>
<label>Password
<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
<p id="message" role="status"></p>
<script>
const LOGIN = "mutation SignIn($email: String!, $password: String!) "
  + "{ login(input: {email: $email, password: $password}) { errors { message } } }";
document.getElementById("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const response = await fetch(window.location.pathname, {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({
      query: LOGIN,
      variables: {email: form.get("email"), password: form.get("password")},
    }),
  });
  const body = await response.json();
  const errors = (body.errors || []).concat(body.data ? body.data.login.errors : []);
  if (errors.length) {
    document.getElementById("message").textContent = errors.map((e) => e.message).join(" ");
  } else {
    window.location.reload();
  }
});
</script>
</body>
</html>
"""


def staff_sign_in_page(*, signed_in: bool) -> str:
    """What a production caller who is not signed in as staff sees instead of the playground."""
    reason = (
        "The account you are signed in with is not a staff account."
        if signed_in
        else "Sign in with your staff account to open it."
    )
    return STAFF_SIGN_IN.replace("<!--reason-->", html.escape(reason))


def main() -> int:
    """`python -m web.playground`: fetch what is missing (run by `make install`)."""
    try:
        fetched = fetch_assets()
    except (OSError, subprocess.CalledProcessError, PlaygroundError) as error:
        print(f"Could not fetch the playground's scripts: {error}", file=sys.stderr)
        return 1
    for asset in fetched:
        print(f"Fetched {asset.local_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
