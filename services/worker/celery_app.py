"""The Celery application factory: reliability settings stated once. Built by the worker
(``services.worker.app``) and by the API's lifespan (to send messages), never on import.

- JSON only (a pickled message is rejected, never executed);
- late ack + reject on worker loss: a chunk task is idempotent, so redelivery is safe;
- prefetch 1: a worker reserves no more tasks than it runs;
- visibility timeout above the longest task, so Redis never redelivers a running task;
- no result backend: results live in Postgres; completion is tracked by item rows.
"""

from __future__ import annotations

from celery import Celery
from kombu.exceptions import ChannelError

from cgd.settings import Settings
from cgd.tasks import GENERATION_QUEUE, ROUTES, Message


def make_celery(settings: Settings) -> Celery:
    app = Celery("cgd", broker=settings.broker_url or "filesystem://", set_as_current=False)
    transport_options: dict[str, object]
    if settings.broker_url:
        transport_options = {"visibility_timeout": int(settings.visibility_timeout_s)}
    else:
        transport_options = embedded_broker_options(settings)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=GENERATION_QUEUE,
        task_routes=ROUTES,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # keep trying through a broker restart
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_time_limit=int(settings.chunk_time_limit_s + 120),
    )
    return app


def embedded_broker_options(settings: Settings) -> dict[str, object]:
    """No broker URL: kombu's filesystem transport, a real Celery transport that needs no
    server (messages are files under CGD_HOME/broker; API and workers share the folder)."""
    root = settings.home / "broker"
    for sub in ("queue", "control", "processed"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "control_folder": str(root / "control"),
        "processed_folder": str(root / "processed"),
        "store_processed": False,
        # The transport polls the folder (kombu's default: once a second, which a job waited
        # for before its first chunk ran); ten listings a second of a small folder cost nothing.
        "polling_interval": 0.1,
    }


def queue_depth(app: Celery, queue: str) -> int | None:
    """Messages waiting in ``queue`` (not those a worker has reserved); None if unknown."""
    try:
        with app.connection_for_write() as conn:
            ok = conn.default_channel.queue_declare(queue=queue, passive=True)
            return int(ok.message_count)
    except ChannelError:  # never declared (or gone with a broker restart): nothing waits in it
        return 0
    except Exception:  # the broker is down: unknown
        return None


def send(app: Celery, messages: list[Message]) -> None:
    """Enqueue tasks (ids only). Call only after the rows they name are committed."""
    for message in messages:
        name, args, queue = message[:3]
        headers = message[3] if len(message) > 3 else None
        app.send_task(name, args=args, queue=queue, headers=headers)
