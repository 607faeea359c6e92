"""The workflow editor's admin endpoints (see static/nudge/admin/workflow_editor.js)."""


def editor_urls(model_admin) -> list:
    return []
