"""The desktop shell: tray icon, overlay window, global hotkeys. The core never imports it."""
