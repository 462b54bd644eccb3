"""/budget: server managers cap each provider's monthly spend; anyone sees where it went.

The ledger lives in the store; commands book their expected cost there with the job itself, so a
refusal here is only ever a read (the limit is enforced by `Store.create_job`)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.costs import amount_words, month_key
from bot.jobs import is_manager, reply_private

PROVIDERS = [app_commands.Choice(name="Viggle (credits)", value="viggle"),
             app_commands.Choice(name="vid2scene (credits)", value="vid2scene"),
             app_commands.Choice(name="Scenario (creative units)", value="scenario")]
NAMES = {"viggle": "Viggle", "vid2scene": "vid2scene", "scenario": "Scenario"}


class Budget(commands.GroupCog, group_name="budget", group_description="Monthly spending limits per provider"):
    def __init__(self, bot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="set", description="Set this server's monthly budget for a provider (managers)")
    @app_commands.describe(provider="Which provider", monthly_limit="Most to spend per calendar month (UTC), in "
                           "the provider's unit; 0 stops paid commands", confirm_above="Ask before any single "
                           "command expected to cost more than this (leave out for the bot's default)",
                           remove="Remove the limit instead")
    @app_commands.choices(provider=PROVIDERS)
    async def set_budget(self, interaction: discord.Interaction, provider: str,
                         monthly_limit: app_commands.Range[float, 0, 10_000_000] | None = None,
                         confirm_above: app_commands.Range[float, 0, 10_000_000] | None = None,
                         remove: bool = False) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # the store may be slow: ack first
        if interaction.guild_id is None or not is_manager(interaction):
            await reply_private(interaction, "Only a server manager (Manage Server) can set budgets.")
            return
        if provider not in NAMES:
            await reply_private(interaction, "Choose Viggle, vid2scene or Scenario.")
            return
        if monthly_limit is None and confirm_above is None and not remove:
            await reply_private(interaction, "Give `monthly_limit`, `confirm_above`, or `remove`.")
            return
        current = await self.bot.store.get_budget(interaction.guild_id, provider)
        limit = None if remove else (monthly_limit if monthly_limit is not None
                                     else (current.monthly_limit if current else None))
        confirm = confirm_above if confirm_above is not None else (current.confirm_above if current else None)
        await self.bot.store.set_budget(interaction.guild_id, provider, monthly_limit=limit, confirm_above=confirm,
                                        by=interaction.user.id)
        name = NAMES[provider]
        parts = [f"{name}: no monthly limit" if limit is None
                 else f"{name}: at most {amount_words(provider, limit)} a month"]
        if confirm is not None:
            parts.append(f"commands over {amount_words(provider, confirm)} ask first")
        await reply_private(interaction, "Budget saved. " + "; ".join(parts) + ".")

    @app_commands.command(name="show", description="This month's spending and budgets, by user")
    @app_commands.describe(provider="Only this provider")
    @app_commands.choices(provider=PROVIDERS)
    async def show(self, interaction: discord.Interaction, provider: str | None = None) -> None:
        # up to 9 store round trips follow: answer Discord's 3 s deadline first
        await interaction.response.defer(ephemeral=True, thinking=True)
        if interaction.guild_id is None:
            await reply_private(interaction, "Budgets belong to a server; use this in one.")
            return
        month = month_key()
        lines = [f"**Spending in {month}** (estimates until the provider reports the real charge)"]
        for name in [provider] if provider else list(NAMES):
            budget = await self.bot.store.get_budget(interaction.guild_id, name)
            spent = await self.bot.store.month_spent(interaction.guild_id, name, month)
            limit = budget.monthly_limit if budget else None
            head = f"**{NAMES[name]}**: {amount_words(name, spent)} spent"
            head += (f" of {amount_words(name, limit)} ({amount_words(name, max(0.0, limit - spent))} left)"
                     if limit is not None else " (no monthly limit)")
            if budget and budget.confirm_above is not None:
                head += f"; asks above {amount_words(name, budget.confirm_above)}"
            lines.append(head)
            users = await self.bot.store.spend_by_user(interaction.guild_id, name, month)
            for user_id, amount in users[:10]:
                lines.append(f"  • <@{user_id}>: {amount_words(name, amount)}")
            if len(users) > 10:
                lines.append(f"  • …and {len(users) - 10} more")
        await reply_private(interaction, "\n".join(lines)[:2000])


async def setup(bot) -> None:
    await bot.add_cog(Budget(bot))
