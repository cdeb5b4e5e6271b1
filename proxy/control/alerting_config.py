"""Config for budget alerts: `alerts: [{at: 0.8}, ...]` on a usd budget, and the `alerting` section (the
webhook they go to). Pydantic only, like control/config.py, which includes AlertConfig in BudgetConfig."""

import os
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlertConfig(_Section):
    # A share of the budget: 0.8 is 80% spent or reserved. Above 1 for budgets that may overrun (downgrade).
    at: Annotated[float, Field(gt=0, le=10)]


class AlertingConfig(_Section):
    # The webhook URL (a Slack incoming webhook, or anything that takes its JSON) comes from this environment
    # variable: it is a secret, so never in the file.
    webhook_url_env: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 5.0  # per attempt
    retries: Annotated[int, Field(ge=0, le=20)] = 5  # after the first attempt
    backoff_seconds: Annotated[float, Field(ge=0)] = 1.0  # before the first retry; doubles, at most a minute

    @model_validator(mode="before")
    @classmethod
    def _url_is_set(cls, data: Any) -> Any:
        name = data.get("webhook_url_env") if isinstance(data, dict) else None
        if name:
            url = os.environ.get(name, "")
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"webhook_url_env names ${name}, which is {'not set' if not url else 'not an http(s) URL'}")
        return data

    @property
    def webhook_url(self) -> str | None:
        return os.environ.get(self.webhook_url_env) if self.webhook_url_env else None


def alerting_problem(alerting: AlertingConfig, budgets: tuple[Any, ...]) -> str | None:
    """Budgets with alerts need somewhere to send them."""
    with_alerts = [index for index, budget in enumerate(budgets) if budget.alerts]
    if with_alerts and not alerting.webhook_url_env:
        return (f"budgets[{with_alerts[0]}].alerts: alerts need alerting.webhook_url_env (the environment variable "
                "holding the webhook URL)")
    return None
