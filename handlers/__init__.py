"""What happens when something arrives, whatever the channel: admin commands, inbound
WhatsApp messages and statuses, CSV imports, stats."""
