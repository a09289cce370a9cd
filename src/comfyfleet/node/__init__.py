"""The node role: drives one ComfyUI, claims jobs when it has capacity, reports progress."""
