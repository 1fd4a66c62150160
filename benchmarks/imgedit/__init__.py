"""ImgEdit instruction-editing benchmark (issue 4; not implemented yet)."""
