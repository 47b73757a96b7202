"""The edges and the wiring: config, CLI, aiohttp app, WhatsApp and Telegram adapters, jobs."""
