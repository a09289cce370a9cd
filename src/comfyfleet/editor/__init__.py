"""ComfyUI's web editor on the fleet (issue 11): its frontend (the `comfyui-frontend-package`,
the `editor` extra), what it needs beside ComfyUI's execution API (users, settings, user
data per principal), and the fleet's own frontend extension ("Publish to fleet")."""
