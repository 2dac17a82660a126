"""``[server] receive_buffer``: the listening socket's SO_RCVBUF, and a warning when capped.

The kernel's default receive buffer (about 208 KiB) overflows under a burst of requests and the
kernel drops what does not fit before the proxy sees it; an admin raises it here. Linux caps
the size at ``net.core.rmem_max``: the proxy then says so at start-up instead of running with
less than was asked for.
"""

from __future__ import annotations

import socket
from pathlib import Path

from structlog.testing import capture_logs

from mfa_radius import app
from tests.support import proxy

RMEM_MAX = int(Path("/proc/sys/net/core/rmem_max").read_text(encoding="utf-8"))
"""The largest receive buffer this kernel grants (bytes)."""


def _config(tmp_path: Path, size: int) -> proxy.ProxyConfig:
    cfg = proxy.write_config(tmp_path)
    text = cfg.path.read_text(encoding="utf-8")
    cfg.path.write_text(
        text.replace('node_name = "test"', f'node_name = "test"\nreceive_buffer = {size}', 1),
        encoding="utf-8",
    )
    return cfg


def _granted(running: app.Running) -> int:
    """What the kernel reports for the first listener's socket (twice what it keeps)."""
    transport = running.servers[0].transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


class TestReceiveBuffer:
    async def test_sets_the_listening_sockets_receive_buffer(self, tmp_path: Path) -> None:
        """A size within the kernel's cap is granted as asked, without a warning."""
        size = min(RMEM_MAX, 1 << 20)
        with capture_logs() as logs:
            async with proxy.in_process(_config(tmp_path, size)) as running:
                granted = _granted(running)
        assert granted // 2 == size
        assert "receive_buffer_capped" not in [e["event"] for e in logs]

    async def test_warns_when_the_kernel_caps_the_size(self, tmp_path: Path) -> None:
        """Asking for more than net.core.rmem_max starts anyway and logs what was granted."""
        with capture_logs() as logs:
            async with proxy.in_process(_config(tmp_path, RMEM_MAX * 2)):
                pass
        capped = [e for e in logs if e["event"] == "receive_buffer_capped"]
        assert len(capped) == 1
        assert capped[0]["requested"] == RMEM_MAX * 2
        assert capped[0]["granted"] == RMEM_MAX
        assert capped[0]["log_level"] == "warning"
