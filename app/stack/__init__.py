"""The local stack: Kafka and Cassandra from Maven Central jars, Airflow from PyPI (``streamfit stack``)."""
