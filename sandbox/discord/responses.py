"""Interaction responses: the initial callback (3 s deadline, once only), followups and the
`@original` message through the interaction webhook (token valid 15 minutes, no bot auth)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import limits, messages, wire
from .errors import (
    ApiError,
    FormErrors,
    already_acknowledged,
    invalid_webhook_token,
    json_response,
    unknown_interaction,
    unknown_message,
    unknown_webhook,
)
from .interactions import APPLICATION_COMMAND, AUTOCOMPLETE, MESSAGE_COMPONENT, MODAL_SUBMIT, Interaction
from .state import Message

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

#: initial response types Discord accepts per interaction type
ALLOWED = {APPLICATION_COMMAND: {4, 5, 9}, MESSAGE_COMPONENT: {4, 5, 6, 7, 9}, AUTOCOMPLETE: {8},
           MODAL_SUBMIT: {4, 5, 6, 7}}


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


class InteractionRoutes:
    def __init__(self, emu: DiscordEmulator) -> None:
        self.emu = emu

    def routes(self) -> list[web.RouteDef]:
        p = "/api/v10"
        return [
            web.post(p + "/interactions/{iid}/{token}/callback", self.callback),
            web.post(p + "/webhooks/{app}/{token}", self.followup),
            web.get(p + "/webhooks/{app}/{token}/messages/{mid}", self.get_message, allow_head=False),
            web.patch(p + "/webhooks/{app}/{token}/messages/{mid}", self.edit_message),
            web.delete(p + "/webhooks/{app}/{token}/messages/{mid}", self.delete_message),
        ]

    # -- initial response ------------------------------------------------------------------------
    async def callback(self, request: web.Request) -> web.StreamResponse:
        emu = self.emu
        ix = emu.interaction_by_id(int(request.match_info["iid"]) if request.match_info["iid"].isdigit() else 0)
        if ix is None or ix.token != request.match_info["token"]:
            raise unknown_interaction()
        body = await emu.read_body(request)
        try:
            if ix.acked:
                raise already_acknowledged()
            late = asyncio.get_running_loop().time() - ix.dispatched_at > emu.ack_deadline
            if ix.failed or late:
                emu._fail(ix)
                raise unknown_interaction()
            rtype = body.json.get("type")
            data = body.json.get("data") or {}
            if rtype not in ALLOWED[ix.type] or (rtype in (6, 7) and ix.component_message_id is None):
                errors = FormErrors()
                errors.add(("type",), "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type")
                errors.raise_if_any()
            msg = await self._apply(ix, rtype, data, body)
        except BaseException:
            body.discard()
            raise
        ix.response_type = rtype
        ix.response_data = data
        ix.ack_latency = asyncio.get_running_loop().time() - ix.dispatched_at
        emu._acked(ix)
        if not _truthy(request.query.get("with_response")):
            return web.Response(status=204)
        info: dict[str, Any] = {"id": str(ix.id), "type": ix.type, "response_message_loading": rtype == 5,
                                "response_message_ephemeral": bool(msg and msg.ephemeral)}
        out: dict[str, Any] = {"interaction": info}
        if msg is not None:
            info["response_message_id"] = str(msg.id)
            out["resource"] = {"type": rtype, "message": wire.message_obj(emu, msg)}
        return json_response(out)

    async def _apply(self, ix: Interaction, rtype: int, data: dict, body) -> Message | None:
        emu = self.emu
        if rtype == 4:
            msg = await messages.create(emu, ix.channel_id, data, body.files, author_id=emu.bot_user_id,
                                        visible_to=ix.user_id if int(data.get("flags") or 0) & 64 else None,
                                        interaction_id=ix.id, webhook=True, msg_type=self._msg_type(ix))
            ix.original_message_id = msg.id
            return msg
        if rtype == 5:
            eph = bool(int(data.get("flags") or 0) & 64)
            msg = await messages.create(emu, ix.channel_id, {}, [], author_id=emu.bot_user_id,
                                        visible_to=ix.user_id if eph else None, interaction_id=ix.id,
                                        webhook=True, msg_type=self._msg_type(ix), extra_flags=messages.LOADING)
            ix.original_message_id = msg.id
            return msg
        if rtype == 6:
            ix.original_message_id = ix.component_message_id
            return None
        if rtype == 7:
            target = emu._messages[ix.component_message_id]  # type: ignore[index]
            ix.original_message_id = target.id
            ix.component_updated = True
            return await messages.edit(emu, target, data, body.files)
        if rtype == 8:
            choices = list(data.get("choices") or [])
            limits.check_choices(choices)
            ix.choices = choices
            return None
        if rtype == 9:
            errors = FormErrors()
            if not 1 <= len(data.get("custom_id") or "") <= 100:
                errors.add(("data", "custom_id"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            if not 1 <= len(data.get("title") or "") <= 45:
                errors.add(("data", "title"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length.")
            if not 1 <= len(data.get("components") or []) <= 5:
                errors.add(("data", "components"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
            errors.raise_if_any()
            ix.modal = data
            return None
        raise ApiError(400, 50035, "Invalid Form Body")

    @staticmethod
    def _msg_type(ix: Interaction) -> int:
        return 20 if ix.type == APPLICATION_COMMAND else 0

    # -- webhook side ----------------------------------------------------------------------------
    def _interaction(self, request: web.Request) -> Interaction:
        emu = self.emu
        ix = emu.interaction_by_token(request.match_info["token"])
        if ix is None or request.match_info["app"] != str(emu.application_id):
            raise unknown_webhook()
        if ix.token_expired:
            raise invalid_webhook_token()
        if not ix.acked:
            raise unknown_webhook()
        return ix

    def _target(self, ix: Interaction, mid: str) -> Message:
        target_id = ix.original_message_id if mid == "@original" else (int(mid) if mid.isdigit() else None)
        if target_id is None or (target_id != ix.original_message_id and target_id not in ix.followup_ids):
            raise unknown_message()
        msg = self.emu._messages.get(target_id)
        if msg is None or msg.deleted:
            raise unknown_message()
        return msg

    async def followup(self, request: web.Request) -> web.StreamResponse:
        emu = self.emu
        ix = self._interaction(request)
        body = await emu.read_body(request)
        try:
            original = emu._messages.get(ix.original_message_id or 0)
            if ix.response_type == 5 and original is not None and original.loading and not original.deleted:
                # Discord: the first followup after a defer replaces the "thinking" message
                msg = await messages.edit(emu, original, {k: v for k, v in body.json.items() if k != "flags"},
                                          body.files)
            else:
                flags = int(body.json.get("flags") or 0)
                msg = await messages.create(emu, ix.channel_id, body.json, body.files, author_id=emu.bot_user_id,
                                            visible_to=ix.user_id if flags & 64 else None, interaction_id=ix.id,
                                            webhook=True, msg_type=self._msg_type(ix))
                ix.followup_ids.append(msg.id)
        except BaseException:
            body.discard()
            raise
        emu._changed()
        if _truthy(request.query.get("wait")):
            return json_response(wire.message_obj(emu, msg))
        return web.Response(status=204)

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        ix = self._interaction(request)
        return json_response(wire.message_obj(self.emu, self._target(ix, request.match_info["mid"])))

    async def edit_message(self, request: web.Request) -> web.StreamResponse:
        emu = self.emu
        ix = self._interaction(request)
        msg = self._target(ix, request.match_info["mid"])
        body = await emu.read_body(request)
        try:
            msg = await messages.edit(emu, msg, body.json, body.files)
        except BaseException:
            body.discard()
            raise
        if msg.id == ix.component_message_id:
            ix.component_updated = True
            emu._changed()
        return json_response(wire.message_obj(emu, msg))

    async def delete_message(self, request: web.Request) -> web.StreamResponse:
        ix = self._interaction(request)
        await messages.delete(self.emu, self._target(ix, request.match_info["mid"]))
        return web.Response(status=204)
