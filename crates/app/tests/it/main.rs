//! Integration tests of the app: real RabbitMQ and PostgreSQL on localhost.

mod queue;
