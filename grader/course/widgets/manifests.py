"""ManifestExplorer: an image reference in, a tree out (index -> manifests -> config ->
layers), the raw JSON of any node on click, and a warning when a config disagrees with its
index entry.

Everything is read over the registry HTTP API through :class:`grader.docker.registry.RegistryClient`
(digest-verified, anonymous tokens for public registries), so it needs no engine: on Binder
it still explores any registry it can reach.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import ipywidgets as widgets

from grader.course.widgets.common import command_html, esc, notice_html, panel_box
from grader.docker.registry import (
    Descriptor,
    Document,
    Platform,
    Reference,
    RegistryClient,
    RegistryError,
    normalize,
)

#: Caps for hostile or huge indexes: what the tree shows at most.
MAX_MANIFESTS = 64
MAX_LAYERS = 128


@dataclass
class ManifestNode:
    """One node of the tree. ``raw`` is the document exactly as the registry sent it
    (for a layer, which is a tarball, its descriptor)."""

    kind: str  # index | image | attestation | config | layer | error
    title: str
    path: str  # "0", "0/2", "0/2/config": stable ids for clicks and tests
    details: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""
    digest: str = ""
    media_type: str = ""
    platform: str | None = None
    warnings: list[str] = field(default_factory=list)
    children: list[ManifestNode] = field(default_factory=list)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, path: str) -> ManifestNode | None:
        return next((n for n in self.walk() if n.path == path), None)

    @property
    def pretty(self) -> str:
        try:
            return json.dumps(json.loads(self.raw), indent=2)
        except ValueError:
            return self.raw.decode("utf-8", "replace")

    @property
    def all_warnings(self) -> list[str]:
        return [w for n in self.walk() for w in n.warnings]


def _size(n: int) -> str:
    if n < 0:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _short(digest: str) -> str:
    return digest[:19] + "…" if len(digest) > 20 else digest


def _platform_of(config: dict) -> Platform:
    return normalize(
        str(config.get("os", "")), str(config.get("architecture", "")), config.get("variant")
    )


def explore(reference: str, client: RegistryClient | None = None) -> ManifestNode:
    """Fetch ``reference`` and everything under it. Fails only for the root; a child that
    cannot be read becomes an ``error`` node with the reason."""
    client = client or RegistryClient(timeout=15)
    ref = Reference.parse(reference)
    root = client.fetch_manifest(ref)
    if root.is_index:
        return _index_node(client, root)
    return _manifest_node(client, root, None, "0")


def _index_node(client: RegistryClient, doc: Document) -> ManifestNode:
    node = ManifestNode(
        kind="index",
        title=f"index  {doc.media_type}  {_short(doc.digest)}",
        path="0",
        details={
            "reference": str(doc.reference),
            "media type": doc.media_type,
            "digest": doc.digest,
        },
        raw=doc.raw,
        digest=doc.digest,
        media_type=doc.media_type,
    )
    try:
        entries = doc.manifests
    except RegistryError as e:
        node.warnings.append(f"the index lists a malformed entry: {e}")
        entries = []
    if len(entries) > MAX_MANIFESTS:
        node.warnings.append(f"{len(entries)} manifests listed; showing the first {MAX_MANIFESTS}")
    for i, desc in enumerate(entries[:MAX_MANIFESTS]):
        path = f"0/{i}"
        try:
            child = client.fetch_child(doc, desc)
        except RegistryError as e:
            node.children.append(_error_node(path, desc, e))
            continue
        node.children.append(_manifest_node(client, child, desc, path))
    return node


def _error_node(path: str, desc: Descriptor, e: RegistryError) -> ManifestNode:
    plat = str(desc.platform) if desc.platform else "?"
    return ManifestNode(
        kind="error",
        title=f"{plat}  {_short(desc.digest)}  cannot be read: {e}",
        path=path,
        details={"digest": desc.digest, "error": str(e)},
        raw=json.dumps({"error": str(e), "kind": e.kind, "digest": desc.digest}).encode(),
        digest=desc.digest,
        warnings=[f"{plat}: {e}"],
    )


def _manifest_node(
    client: RegistryClient, doc: Document, desc: Descriptor | None, path: str
) -> ManifestNode:
    attestation = desc is not None and desc.is_attestation
    plat = str(desc.platform) if desc is not None and desc.platform else None
    size = desc.size if desc is not None else len(doc.raw)
    details = {
        "media type": doc.media_type,
        "digest": doc.digest,
        "size": _size(size),
    }
    if attestation:
        about = desc.annotations.get("vnd.docker.reference.digest", "?") if desc else "?"
        details["attestation for"] = about
        title = f"attestation  for {_short(about)}  {_short(doc.digest)}  {_size(size)}"
    else:
        title = f"{plat or 'image'}  {_short(doc.digest)}  {_size(size)}"
    node = ManifestNode(
        kind="attestation" if attestation else "image",
        title=title,
        path=path,
        details=details,
        raw=doc.raw,
        digest=doc.digest,
        media_type=doc.media_type,
        platform=plat,
    )
    if (
        desc is not None
        and desc.media_type
        and doc.media_type
        and desc.media_type != (doc.media_type)
    ):
        node.warnings.append(
            f"{plat}: the index says media type {desc.media_type}, the manifest is {doc.media_type}"
        )
    if doc.is_index:
        node.warnings.append(f"{plat}: this entry is itself an index (nested indexes)")
        return node
    try:
        cfg_desc = doc.config
        layers = doc.layers
    except RegistryError as e:
        node.warnings.append(f"malformed manifest: {e}")
        return node
    if cfg_desc is not None:
        node.children.append(_config_node(client, doc, cfg_desc, desc, attestation, path))
    if len(layers) > MAX_LAYERS:
        node.warnings.append(f"{len(layers)} layers; showing the first {MAX_LAYERS}")
    for j, layer in enumerate(layers[:MAX_LAYERS]):
        predicate = layer.annotations.get("in-toto.io/predicate-type", "")
        node.children.append(
            ManifestNode(
                kind="layer",
                title=f"layer {j + 1}  {layer.media_type}  {_short(layer.digest)}  "
                f"{_size(layer.size)}" + (f"  {predicate}" if predicate else ""),
                path=f"{path}/layer{j}",
                details={
                    "media type": layer.media_type,
                    "digest": layer.digest,
                    "size": _size(layer.size),
                },
                raw=json.dumps(
                    (doc.json.get("layers") or [])[j], indent=2, sort_keys=True
                ).encode(),
                digest=layer.digest,
                media_type=layer.media_type,
            )
        )
    return node


def _config_node(
    client: RegistryClient,
    manifest: Document,
    cfg_desc: Descriptor,
    entry: Descriptor | None,
    attestation: bool,
    parent: str,
) -> ManifestNode:
    path = f"{parent}/config"
    try:
        cfg = client.fetch_config(manifest)
    except RegistryError as e:
        return ManifestNode(
            kind="error",
            title=f"config {_short(cfg_desc.digest)} cannot be read: {e}",
            path=path,
            raw=json.dumps({"error": str(e), "digest": cfg_desc.digest}).encode(),
            digest=cfg_desc.digest,
            warnings=[f"config {cfg_desc.digest}: {e}"],
        )
    c = cfg.json
    inner = c.get("config") if isinstance(c.get("config"), dict) else {}
    entrypoint = inner.get("Entrypoint")
    cmd = inner.get("Cmd")
    plat = _platform_of(c)
    details = {
        "os": str(c.get("os", "")),
        "architecture": str(c.get("architecture", "")),
        "variant": str(c.get("variant") or ""),
        "created": str(c.get("created", "")),
        "entrypoint": json.dumps(entrypoint),
        "cmd": json.dumps(cmd),
        "digest": cfg.digest,
    }
    node = ManifestNode(
        kind="config",
        title=f"config  {plat}  created {details['created'][:19] or '?'}  "
        f"entrypoint {json.dumps(entrypoint)}  cmd {json.dumps(cmd)}",
        path=path,
        details=details,
        raw=cfg.raw,
        digest=cfg.digest,
        media_type=cfg_desc.media_type,
        platform=str(plat),
    )
    if entry is not None and not attestation:
        listed = entry.normalized_platform
        if listed is None:
            node.warnings.append(
                f"the index entry {_short(entry.digest)} has no platform; its config says {plat}"
            )
        elif listed != plat:
            node.warnings.append(
                f"the index says {listed} but this image's config says {plat}: a runtime "
                f"choosing by the index would pull the wrong binaries for {listed}"
            )
    return node


# --- the widget ---------------------------------------------------------------------------

_ICONS = {
    "index": "📚",
    "image": "🖼",
    "attestation": "📜",
    "config": "⚙",
    "layer": "▤",
    "error": "⚠",
}


class ManifestExplorer:
    """Type a reference, press Explore; click any node to see its raw JSON."""

    def __init__(
        self,
        reference: str = "",
        *,
        client: RegistryClient | None = None,
        explore_now: bool = False,
    ) -> None:
        self.client = client or RegistryClient(timeout=15)
        self.root: ManifestNode | None = None
        self.error: str | None = None
        self.selected: ManifestNode | None = None
        self.reference = widgets.Text(
            value=reference,
            description="Image",
            placeholder="127.0.0.1:5000/me/app:v1 or python:3.11-slim",
            layout=widgets.Layout(width="60%"),
        )
        self.reference.add_class("mp-manifest-ref")
        self.command = widgets.HTML()
        self.reference.observe(lambda _c: self._show_command(), "value")
        self.button = widgets.Button(description="Explore", button_style="primary", icon="search")
        self.button.add_class("mp-explore-button")
        self.status = widgets.HTML()
        self.warnings = widgets.HTML()
        self.tree = widgets.VBox()
        self.tree.add_class("mp-manifest-tree")
        self.raw = widgets.HTML()
        self.raw.add_class("mp-manifest-raw")
        self.node_buttons: dict[str, widgets.Button] = {}
        self.button.on_click(lambda _b: self.explore_async())
        self.widget = panel_box(
            [
                widgets.HTML("<h4>Manifest explorer</h4>"),
                widgets.HTML(
                    notice_html(
                        "Reads the registry's HTTP API directly (no engine needed): index → one "
                        "manifest per platform → its config and layers. Click a node for its "
                        "raw JSON."
                    )
                ),
                widgets.HBox([self.reference, self.button]),
                self.command,
                self.status,
                self.warnings,
                widgets.HBox([self.tree, self.raw]),
            ],
            "mp-manifest-explorer",
        )
        self._show_command()
        if explore_now and reference:
            self.explore(reference)

    def _show_command(self) -> None:
        """The exact request the explorer makes first, and the docker command that prints
        the same bytes."""
        text = self.reference.value.strip()
        try:
            ref = Reference.parse(text)
        except RegistryError:
            self.command.value = ""
            return
        scheme = "http" if ref.insecure else "https"
        self.command.value = command_html(
            ["docker", "buildx", "imagetools", "inspect", "--raw", text],
            "The same bytes as this command",
        ) + (
            '<div class="mp-command-label">What the explorer asks the registry first (then '
            "each entry's manifest and config by digest):</div>"
            f'<pre class="mp-command">GET {esc(scheme)}://{esc(ref.host)}/v2/'
            f"{esc(ref.repository)}/manifests/{esc(ref.reference)}</pre>"
        )

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def explore_async(self) -> threading.Thread:
        """The Explore button: fetch in a worker so the notebook stays responsive."""
        thread = threading.Thread(target=self.explore, name="manifest-explorer", daemon=True)
        thread.start()
        return thread

    def explore(self, reference: str | None = None) -> ManifestNode | None:
        """Fetch and show ``reference`` (default: the text field); returns the tree."""
        ref = (reference if reference is not None else self.reference.value).strip()
        if reference is not None:
            self.reference.value = ref
        self.button.disabled = True
        self.status.value = f"<i>fetching {esc(ref)}…</i>"
        self.root, self.error = None, None
        try:
            if not ref:
                raise RegistryError("bad-reference", "Type an image reference first.")
            self.root = explore(ref, self.client)
        except RegistryError as e:
            self.error = str(e)
        except Exception as e:  # a learner's input must never end in a traceback
            self.error = f"unexpected {type(e).__name__}: {e}"
        finally:
            self.button.disabled = False
        self._render()
        return self.root

    def _render(self) -> None:
        self.node_buttons = {}
        if self.root is None:
            self.status.value = (
                f'<div class="mp-known-error mp-manifest-error">{esc(self.error)}</div>'
            )
            self.tree.children = ()
            self.warnings.value = ""
            self.raw.value = ""
            return
        images = [n for n in self.root.walk() if n.kind == "image"]
        self.status.value = (
            f'<span class="mp-manifest-summary">{esc(self.root.kind)} with '
            f"{len(images)} image manifest(s): "
            f"{esc(', '.join(n.platform or '?' for n in images))}</span>"
        )
        warns = self.root.all_warnings
        self.warnings.value = "".join(
            f'<div class="mp-warning mp-manifest-warning">⚠ {esc(w)}</div>' for w in warns
        )
        rows = []
        for node in self.root.walk():
            depth = node.path.count("/")
            b = widgets.Button(
                description=f"{_ICONS.get(node.kind, '')} {node.title}",
                tooltip=node.digest,
                layout=widgets.Layout(width="auto", margin=f"0 0 0 {depth * 22}px"),
                button_style="warning" if node.warnings else "",
            )
            b.add_class("mp-node")
            b.add_class(f"mp-node-{node.kind}")
            b.on_click(lambda _b, p=node.path: self.select(p))
            self.node_buttons[node.path] = b
            rows.append(b)
        self.tree.children = tuple(rows)
        self.select(self.root.path)

    def select(self, path: str) -> ManifestNode | None:
        """A click on a node: show its details and raw JSON."""
        if self.root is None:
            return None
        node = self.root.find(path)
        if node is None:
            return None
        self.selected = node
        details = "".join(
            f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in node.details.items()
        )
        self.raw.value = (
            f'<div class="mp-node-detail" data-path="{esc(node.path)}" data-kind="{node.kind}">'
            f'<table class="mp-table">{details}</table>'
            f'<pre class="mp-json">{esc(node.pretty)}</pre></div>'
        )
        return node
