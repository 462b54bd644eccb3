"""The outbound policy on its own: which URLs pass, and that the address check happens where the
connection is made (a name that resolves inward is refused even though the name is allowed)."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from bot.config import Settings, ViggleSettings
from bot.net import Net
from bot.outbound import OutboundPolicy, Refused
from bot.redact import Masker, secret_forms
from tests.support.trap import SECRET, Trap


class LyingDns(aiohttp.abc.AbstractResolver):
    """Answers every name with 127.0.0.1 (a rebinding attacker's DNS)."""

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        return None


@pytest.fixture
async def trap():
    service = await Trap().start()
    yield service
    await service.stop()


def test_allowlist_ports_schemes_and_inward_addresses():
    settings = Settings(viggle=ViggleSettings(base_url="http://127.0.0.1:9000", allowed_hosts='["127.0.0.1:9001"]'))
    policy = OutboundPolicy.from_settings(settings)
    for ok in ("http://127.0.0.1:9000/api", "http://127.0.0.1:9001/cdn/x.mp4", "https://cdn.discordapp.com/a/b",
               "https://acct.blob.core.windows.net/c/v.mp4?sig=1", "https://cdn.cloud.scenario.com/assets/a"):
        policy.check_url(ok)
    for bad in ("http://127.0.0.1:9002/", "http://169.254.169.254/latest/", "http://[::1]:9000/",
                "file:///etc/passwd", "https://user:pw@cdn.discordapp.com/x", "https://cdn.discordapp.com:8443/x",
                "https://evil.example/x", "https://blob.core.windows.net.evil.example/x", "http://10.0.0.8/"):
        with pytest.raises(Refused):
            policy.check_url(bad)
    # a link a user gives may point anywhere public, never inward unless configured
    policy.check_user_url("https://example.org/me.png")
    for bad in ("http://127.0.0.1:9002/me.png", "http://169.254.169.254/", "http://[fd00::1]/", "http://224.0.0.1/"):
        with pytest.raises(Refused):
            policy.check_user_url(bad)


async def test_a_name_that_resolves_inward_is_refused_at_connect_time(trap):
    port = int(trap.base.rsplit(":", 1)[1])
    net = Net(policy=OutboundPolicy.of([f"cdn.example.com:{port}"]), resolver=LyingDns())
    try:
        with pytest.raises(Refused, match="private or reserved"):
            await net.json_request("GET", f"http://cdn.example.com:{port}/status")
    finally:
        await net.close()
    assert trap.total == 0


async def test_the_configured_inward_origin_is_reached_and_nothing_else(trap, tmp_path):
    port = int(trap.base.rsplit(":", 1)[1])
    net = Net(policy=OutboundPolicy.of([f"localhost:{port}"]))
    try:
        size = await net.download(f"http://localhost:{port}/file", tmp_path / "f.bin", max_bytes=1000)
        assert (tmp_path / "f.bin").read_bytes() == SECRET and size == len(SECRET)
        trap.redirects["/away"] = "http://127.0.0.1:1/elsewhere"  # same machine, another port
        with pytest.raises(Refused):
            await net.download(f"http://localhost:{port}/away", tmp_path / "g.bin")
        with pytest.raises(Refused):
            await net.session.get(f"http://127.0.0.1:{port}/direct")  # even bypassing Net's methods
    finally:
        await net.close()
    assert trap.hits == {"/file": 1, "/away": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_every_form_of_a_secret_is_masked():
    mask = Masker(secret_forms("key_abc123", "s3cr3t-value"))
    import base64

    basic = base64.b64encode(b"key_abc123:s3cr3t-value").decode()
    text = f"Bearer key_abc123; Basic {basic}; q=key_abc123&s=s3cr3t-value; {base64.b64encode(b'key_abc123').decode()}"
    masked = mask(text)
    assert "key_abc123" not in masked and "s3cr3t" not in masked and basic not in masked
    assert masked.count("***") == 5


def test_allowed_hosts_are_read_as_json_and_checked(monkeypatch, tmp_path):
    from bot.config import ConfigError, load_settings

    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("VIGGLE_ALLOWED_HOSTS", '["127.0.0.1:9001", "*.viggle.ai"]')
    assert load_settings().viggle.allowed_hosts == ["127.0.0.1:9001", "*.viggle.ai"]
    monkeypatch.setenv("VIGGLE_ALLOWED_HOSTS", '["cdn.example.com/path"]')
    with pytest.raises(ConfigError, match="VIGGLE_ALLOWED_HOSTS: .*host:port"):
        load_settings()
