"""One router per concern: health, rag, openai (chat completions), feedback, chat page."""
