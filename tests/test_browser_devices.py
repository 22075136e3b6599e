"""The call page in headless Chromium with two fake cameras: the invite card while alone (link,
Copy, ringing someone online into the meeting), switching camera, microphone and speaker in
the middle of a call while the other side keeps decoding, and chat times in the viewer's locale."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from browser import CHROMIUM_ARGS, poll, run_scenario
from browser import open_page as browser_page
from conftest import PASSWORD, Outbox
from test_browser_call import assert_audio_flowing, assert_video_flowing, join, make_users

from meet.clock import FakeClock
from meet.config import Config
from meet.server import RunningServer

pytestmark = pytest.mark.browser

# Three fake cameras. Chromium's fake_device_1 is a Y16 depth camera that its encoder sends
# nothing of: the test switches from fake_device_0 (I420) to fake_device_2 (MJPEG). Microphones
# and speakers come in threes anyway.
ARGS = [a for a in CHROMIUM_ARGS if a != "--use-fake-device-for-media-stream"] + [
    "--use-fake-device-for-media-stream=device-count=3"
]
NEW_CAMERA = "fake_device_2"
# 2027-01-15 14:05 UTC: the server stamps chat messages with it (a past day: date and time shown).
CHAT_AT = 1_800_021_900.0

# What my first connection sends, per kind: the track's id and label.
SENDERS_JS = """() => {
  const out = {};
  for (const pc of window.meetCall.peers().values()) {
    for (const s of pc.getSenders()) if (s.track && !out[s.track.kind]) out[s.track.kind] = {id: s.track.id, label: s.track.label};
  }
  return out;
}"""
SELF_VIEW_JS = """() => {
  const v = document.querySelector('.tile.local:not(.screen) video');
  const t = v && v.srcObject && v.srcObject.getVideoTracks()[0];
  return t ? t.label : null;
}"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(CHAT_AT)


@pytest.fixture
def config(tmp_path: Any, request: Any) -> Config:
    from conftest import make_config

    relay = getattr(request, "param", None)  # "always": media through the relay (relay.js)
    rtc = {"relay": relay, "host_addresses": ["127.0.0.1"]} if relay else {}
    return make_config(tmp_path, auth={"mail_max_per_window": 50}, rtc=rtc)


def open_page(browser: Any, base: str, name: str, locale: str) -> Any:
    return browser_page(browser, base, name, PASSWORD, locale=locale, timezone_id="UTC")


async def run(scenario: Any) -> Any:
    return await run_scenario(scenario, ARGS)


def invite_visible(page: Any) -> bool:
    return bool(page.evaluate("!document.getElementById('invite-card').hidden"))


def choose_other(page: Any, select: str, label: str = "") -> str:
    """Pick the option labelled `label`, or else one other than the selected one (and than the
    "default" alias); returns its label."""
    chosen: str = page.evaluate(
        """([s, label]) => { const el = document.querySelector(s);
          const o = [...el.options].find((o) => label ? o.textContent === label
            : o.value && o.value !== el.value && o.value !== 'default');
          el.value = o.value; el.dispatchEvent(new Event('change'));
          return o.textContent; }""",
        [select, label],
    )
    return chosen


def switch_devices(alice: Any, bob: Any, a: str) -> dict[str, Any]:
    """Alice switches camera, microphone and speaker mid-call; Bob keeps receiving her."""
    before = alice.evaluate(SENDERS_JS)
    alice.evaluate("window.oldTracks = window.meetCall.media.preview.getTracks()")
    alice.click("#open-devices")
    alice.wait_for_selector("#devices-dialog[open]")
    camera = choose_other(alice, "#devices-camera", NEW_CAMERA)
    poll(lambda: alice.evaluate(SENDERS_JS)["video"]["label"] == camera, what="the new camera on the sender")
    assert_video_flowing(bob, [a])  # frames keep being decoded after the switch
    mic = choose_other(alice, "#devices-mic")
    poll(lambda: alice.evaluate(SENDERS_JS)["audio"]["label"] == mic, what="the new microphone on the sender")
    assert_audio_flowing(bob, [a])
    levels: set[str] = set()  # the dialog's meter follows the new microphone (it beeps)

    def level_moves() -> bool:
        levels.add(alice.get_attribute("#devices-level", "data-level") or "")
        return len(levels) >= 3

    poll(level_moves, what="the devices dialog's microphone level moving")
    speaker = choose_other(alice, "#devices-speaker")
    speaker_id = alice.input_value("#devices-speaker")
    poll(
        lambda: alice.evaluate(
            "(id) => [...document.querySelectorAll('.tile:not(.local) video')].every((v) => v.sinkId === id)",
            speaker_id,
        ),
        what="remote tiles playing through the chosen speaker",
    )
    alice.click("#devices-done")
    return {
        "before": before,
        "after": alice.evaluate(SENDERS_JS),
        "camera": camera,
        "mic": mic,
        "speaker": speaker,
        "self_view": alice.evaluate(SELF_VIEW_JS),
        "stored": alice.evaluate("JSON.parse(localStorage.getItem('meet-devices'))"),
        "speaker_id": speaker_id,
        "devices_error": alice.inner_text("#devices-error"),
        "dialog_open": alice.evaluate("document.getElementById('devices-dialog').open"),
        "old_tracks": alice.evaluate("window.oldTracks.map((t) => t.readyState)"),
    }


def chat_time(page: Any) -> str:
    return str(
        poll(
            lambda: page.evaluate("(document.querySelector('.chat-time') || {}).textContent"),
            what="a chat time",
        )
    )


async def test_invite_card_device_switching_and_chat_time_locale(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        alice = open_page(browser, base, "alice", "en-GB")
        bob = open_page(browser, base, "bob", "en-US")
        bob.goto(f"{base}/dashboard")
        a = join(alice, base, code)
        poll(lambda: invite_visible(alice), what="the invite card while alone")
        card = {
            "link": alice.inner_text("#invite-link"),
            "copy": alice.is_visible("#invite-copy"),
        }
        # On Bob's dashboard, Alice is online "In a meeting" (no Call button: she is busy).
        busy = poll(
            lambda: bob.evaluate(
                "[...document.querySelectorAll('#online-users .online-user.in-meeting')]"
                ".map((li) => li.querySelector('.online-name').textContent + ': ' + li.querySelector('.online-busy').textContent)"
                ".join()"
            ),
            what="alice in a meeting on bob's dashboard",
        )
        card["busy_on_dashboard"] = busy
        # Bob is online on his dashboard: ring him from the card; he accepts and joins.
        alice.click(".invite-person[data-user-id] .invite-ring")
        bob.wait_for_selector("#incoming-call:not([hidden])")
        bob.click("#accept-call")
        bob.wait_for_url(f"**/r/{code}")
        bob.wait_for_selector("#join-button:enabled")
        # Bob picks his speaker before joining (and tries it): the meeting plays through it.
        bob.wait_for_selector("#speaker-field:not([hidden]) #speaker-select:enabled")
        bob_speaker = {"label": choose_other(bob, "#speaker-select", "Fake Audio Output 2")}
        bob_speaker["id"] = bob.input_value("#speaker-select")
        bob.click("#speaker-test")
        bob.click("#join-button")
        bob.wait_for_selector("#call:not([hidden])")
        b = str(poll(lambda: bob.evaluate("window.meetCall.peerId()"), what="bob's peer id"))
        poll(lambda: not invite_visible(alice), what="the invite card gone once bob joined")
        bob_card = invite_visible(bob)
        assert_video_flowing(bob, [a])
        assert_video_flowing(alice, [b])

        bob_speaker["sinks"] = bob.evaluate(
            "[...document.querySelectorAll('.tile:not(.local) video')].map((v) => v.sinkId)"
        )
        bob_speaker["error"] = bob.text_content("#prejoin-error")
        switched = switch_devices(alice, bob, a)

        alice.click("#toggle-chat")
        alice.fill("#chat-input", "what time is it")
        alice.press("#chat-input", "Enter")
        bob.click("#toggle-chat")
        times = {"en-GB": chat_time(alice), "en-US": chat_time(bob)}

        bob.click("#leave")
        bob.wait_for_url("**/dashboard")
        poll(lambda: invite_visible(alice), what="the invite card back when alone again")
        return {
            "card": card,
            "bob_card": bob_card,
            "bob_speaker": bob_speaker,
            "switched": switched,
            "times": times,
            "errors": alice.errors + bob.errors,
        }

    result = await run(scenario)
    assert result["card"] == {
        "link": f"{base}/r/{code}",
        "copy": True,
        "busy_on_dashboard": "alice: In a meeting",
    }
    assert result["bob_card"] is False
    speaker = result["bob_speaker"]
    assert speaker["id"] and speaker["sinks"] == [speaker["id"]] and speaker["error"] == ""
    s = result["switched"]
    assert s["after"]["video"]["id"] != s["before"]["video"]["id"]
    assert s["after"]["video"]["label"] == s["camera"] != s["before"]["video"]["label"]
    assert s["after"]["audio"]["label"] == s["mic"] != s["before"]["audio"]["label"]
    assert s["self_view"] == s["camera"]  # the self-view shows the new camera
    assert s["old_tracks"] == ["ended", "ended"]  # the old camera and microphone were stopped
    assert s["dialog_open"] is False
    stored = s["stored"]
    assert stored["speaker"] == s["speaker_id"] and stored["camera"] and stored["mic"]
    # 14:05 UTC: 24-hour in en-GB, 12-hour without a leading zero in en-US.
    assert re.fullmatch(r"15 Jan,? 14:05", result["times"]["en-GB"]), result["times"]
    assert re.fullmatch(r"Jan 15,? 2:05\s?PM", result["times"]["en-US"]), result["times"]
    assert result["errors"] == []


@pytest.mark.parametrize("config", ["always"], indirect=True)
async def test_switching_camera_and_microphone_through_the_relay(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        alice = open_page(browser, base, "alice", "en-GB")
        bob = open_page(browser, base, "bob", "en-GB")
        a = join(alice, base, code)
        join(bob, base, code)
        assert_video_flowing(bob, [a])
        switched = switch_devices(alice, bob, a)
        return {
            "mode": alice.evaluate("window.meetCall.mode()"),
            "switched": switched,
            "errors": alice.errors + bob.errors,
        }

    result = await run(scenario)
    assert result["mode"] == "relay"
    s = result["switched"]
    assert s["after"]["video"]["label"] == s["camera"] != s["before"]["video"]["label"]
    assert s["after"]["audio"]["label"] == s["mic"] != s["before"]["audio"]["label"]
    assert result["errors"] == []
