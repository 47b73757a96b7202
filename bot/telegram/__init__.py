"""The Telegram admin bot: the PTB application inside ``serve`` and how replies look there."""
