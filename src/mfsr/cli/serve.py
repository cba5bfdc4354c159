"""``mfsr serve``: a local web page that turns a clip into a face (``docs/serve.md``)."""

from __future__ import annotations

from pathlib import Path

import typer

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    port: int = typer.Option(8765, min=0, max=65535, help="Port to listen on (0: any free port)."),
    host: str = typer.Option(
        "127.0.0.1", help="Address to listen on; any other than loopback requires a token."
    ),
    model: str = typer.Option(
        None, help="Trained model (run folder or .safetensors); default: the shipped model."
    ),
    workdir: Path = typer.Option(
        None,
        help="Keep uploads and results here (default: a private temporary folder, "
        "deleted on exit).",
    ),
    max_upload_mb: int = typer.Option(500, help="Largest clip accepted, in MB."),
    device: str = typer.Option("auto", help="auto (GPU if available), cpu, cuda, cuda:1."),
) -> None:
    """Serve the analyst's page: open a clip, see the tracked face over time, compare the
    LR crop, bicubic, classical fusion and the model for a moment, export a case-file sheet.
    Works offline; nothing leaves the machine."""
    import secrets
    import socket
    import tempfile

    import uvicorn

    from mfsr.cli.console import console
    from mfsr.enhance import load_enhancer
    from mfsr.errors import MfsrError
    from mfsr.serve.app import create_app
    from mfsr.serve.workspace import Workspace
    from mfsr.shipped import DEFAULT, shipped_path

    if max_upload_mb < 1:
        raise MfsrError(f"--max-upload-mb must be >= 1, got {max_upload_mb}")
    if workdir is not None and workdir.exists() and not workdir.is_dir():
        raise MfsrError(f"--workdir {workdir}: not a folder")
    enhancer = load_enhancer(model or shipped_path(DEFAULT), device=device)
    classical = load_enhancer(
        baseline="classical",
        n_frames=enhancer.n_frames,
        scale=enhancer.scale,
        lr_size=enhancer.lr_size,
        device=device,
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # connections queue from now on, while uvicorn starts
    except OSError as exc:
        sock.close()
        raise MfsrError(f"--host {host} --port {port}: cannot listen ({exc.strerror})") from None
    port = sock.getsockname()[1]
    loopback = host in LOOPBACK
    token = None if loopback else secrets.token_urlsafe(16)
    name = f"[{host}]" if ":" in host else host
    hosts = {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")} | {f"{name}:{port}"}
    owned = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="mfsr-serve-")) if owned else workdir
    workspace = Workspace(folder, enhancer, classical, owned=owned)
    app = create_app(workspace, hosts=hosts, token=token, max_bytes=max_upload_mb * 1_000_000)
    wildcard = host in ("0.0.0.0", "::")  # every address: name the machine, not 0.0.0.0
    shown = socket.gethostname() if wildcard else name
    address = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    where = " (listening on every address of this machine)" if wildcard else ""
    console.print(f"model: {enhancer.label} (x{enhancer.scale}, {enhancer.n_frames} frames)")
    console.print(
        f"mfsr serve: open {address}{where}  (Ctrl-C to stop)", highlight=False, soft_wrap=True
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        workspace.close()
        sock.close()
