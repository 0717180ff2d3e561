"""The dashboard: server-rendered pages per area, their shared page helpers, and static assets."""
