"""The workflow report page in admin."""


def report_urls(model_admin) -> list:
    return []
