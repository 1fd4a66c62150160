"""ImgEdit-Bench (Basic suite, 737 cases, 9 edit types): edits from any model, judged by any OpenAI-compatible VLM."""
