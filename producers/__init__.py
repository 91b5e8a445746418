"""The department producer library: the wire contract, signing, batching and retries.

It depends on nothing of the engine, so a department installs it alone (`pip install jiancha`)::

    from .client import producer_from_config
    from .config import ProducerConfig

    config = ProducerConfig.from_env()  # JIANCHA_BROKER_URL, JIANCHA_KAFKA_*, … (docs/settings.md)
    async with producer_from_config(config, "gongan") as producer:
        await producer.send_and_wait(event)
"""

if __name__ != "jiancha.producers":  # one copy of the module, under the installed name only
    raise ImportError(f"import jiancha.producers, not {__name__}: producers/ is installed under jiancha.")
