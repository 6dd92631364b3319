"""neuron-monitor's JSON stream: parsed (schema, stream), exported as Prometheus text (prometheus),
and summarised per benchmark level (summary). Nothing here needs the Neuron SDK."""
