"""Using a trained model after training: the REST/OpenAI server and the text generation it shares with `chat`."""
