-- A WhatsApp template an agent sent (JSON: name, language, parameters). The text column holds
-- what the transcript shows; the connector sends the template itself.
ALTER TABLE messages ADD COLUMN template TEXT;
