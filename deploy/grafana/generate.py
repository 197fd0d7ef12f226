# Generates zkgate.json: python3 deploy/grafana/generate.py
import json, os
panels=[]
y=0
pid=1
def ts(title, exprs, unit="short", w=12, h=8, x=0, stack=False, desc=""):
    global pid
    p={"id":pid,"type":"timeseries","title":title,"description":desc,
       "datasource":{"type":"prometheus","uid":"${datasource}"},
       "gridPos":{"h":h,"w":w,"x":x,"y":y},
       "fieldConfig":{"defaults":{"unit":unit,"custom":{"stacking":{"mode":"normal" if stack else "none"}}},"overrides":[]},
       "options":{"legend":{"displayMode":"list","placement":"bottom"},"tooltip":{"mode":"multi"}},
       "targets":[{"refId":chr(65+i),"expr":e,"legendFormat":l} for i,(e,l) in enumerate(exprs)]}
    pid+=1
    return p
def stat(title, expr, legend, w=6, h=4, x=0, mappings=None, desc=""):
    global pid
    p={"id":pid,"type":"stat","title":title,"description":desc,
       "datasource":{"type":"prometheus","uid":"${datasource}"},
       "gridPos":{"h":h,"w":w,"x":x,"y":y},
       "fieldConfig":{"defaults":{"mappings":mappings or [],"thresholds":{"mode":"absolute","steps":[{"color":"green","value":None},{"color":"red","value":1}]}},"overrides":[]},
       "options":{"colorMode":"background","graphMode":"none","reduceOptions":{"calcs":["lastNotNull"],"fields":"","values":False}},
       "targets":[{"refId":"A","expr":expr,"legendFormat":legend}]}
    pid+=1
    return p
sel='ensemble=~"$ensemble",instance=~"$instance"'
panels.append(stat("Breaker open", f'max by (ensemble) (zkgate_breaker_state{{state="open",{sel}}})', "{{ensemble}}", x=0,
    desc="1 while the ensemble breaker is open: new sessions refused, requests answered with the reject code."))
panels.append(stat("No quorum", f'1 - max by (ensemble) (zkgate_ensemble_quorum{{{sel}}})', "{{ensemble}}", x=6,
    desc="1 while health sees no quorum with a leader."))
panels.append(stat("Members ejected", f'sum by (ensemble) (zkgate_member_ejected{{{sel}}})', "{{ensemble}}", x=12))
panels.append(stat("Members down", f'count by (ensemble) (zkgate_member_up{{{sel}}} == 0) or sum by (ensemble) (zkgate_member_up{{{sel}}}) * 0', "{{ensemble}}", x=18))
y+=4
panels.append(ts("Request rate", [(f'sum by (ensemble, op) (rate(zkgate_requests_total{{{sel}}}[$__rate_interval]))', "{{ensemble}} {{op}}")], unit="reqps", x=0, stack=True))
panels.append(ts("Latency p50 / p99 (request to member reply)", [
    (f'histogram_quantile(0.5, sum by (ensemble, le) (rate(zkgate_request_duration_seconds_bucket{{{sel}}}[$__rate_interval])))', "{{ensemble}} p50"),
    (f'histogram_quantile(0.99, sum by (ensemble, le) (rate(zkgate_request_duration_seconds_bucket{{{sel}}}[$__rate_interval])))', "{{ensemble}} p99")], unit="s", x=12))
y+=8
panels.append(ts("Errors and rejects", [
    (f'sum by (ensemble, code) (rate(zkgate_error_responses_total{{{sel}}}[$__rate_interval]))', "{{ensemble}} {{code}}"),
    (f'sum by (ensemble) (rate(zkgate_rejected_requests_total{{{sel}}}[$__rate_interval]))', "{{ensemble}} rejected by zkgate"),
    (f'sum by (ensemble, limit) (rate(zkgate_limited_requests_total{{{sel}}}[$__rate_interval]))', "{{ensemble}} over client limits ({{limit}})"),
    (f'sum by (ensemble) (rate(zkgate_lost_requests_total{{{sel}}}[$__rate_interval]))', "{{ensemble}} lost with their member"),
    (f'sum by (ensemble) (rate(zkgate_stalled_requests_total{{{sel}}}[$__rate_interval]))', "{{ensemble}} slow calls")], unit="reqps", x=0))
panels.append(ts("Sessions per member", [(f'sum by (ensemble, member) (zkgate_sessions{{{sel}}})', "{{member}}")], x=12, stack=True))
y+=8
panels.append(ts("Breaker state", [(f'max by (ensemble, state) (zkgate_breaker_state{{{sel}}})', "{{ensemble}} {{state}}")], x=0,
    desc="1 for the current state; transitions are counted in zkgate_breaker_transitions_total."))
panels.append(ts("Members: serving, ejected", [
    (f'max by (member) (zkgate_member_serving{{{sel}}})', "{{member}} serving"),
    (f'max by (member) (zkgate_member_ejected{{{sel}}})', "{{member}} ejected")], x=12))
y+=8
panels.append(ts("Session moves by outcome", [(f'sum by (ensemble, outcome) (increase(zkgate_session_moves_total{{{sel}}}[$__rate_interval]))', "{{outcome}}")], x=0, stack=True,
    desc="moved: the client never noticed; closed-*: the client was closed and reconnected (closed-unsafe-in-flight is by design: a write was in flight)."))
panels.append(ts("Move duration p99", [(f'histogram_quantile(0.99, sum by (ensemble, outcome, le) (rate(zkgate_session_move_duration_seconds_bucket{{{sel}}}[$__rate_interval])))', "{{ensemble}} {{outcome}}")], unit="s", x=12))
y+=8
panels.append(ts("Client connections and refusals", [
    (f'sum by (ensemble) (zkgate_client_connections{{{sel}}})', "{{ensemble}} connections"),
    (f'sum by (ensemble, reason) (rate(zkgate_refused_connections_total{{{sel}}}[$__rate_interval]))', "{{ensemble}} refused/s {{reason}}")], x=0))
panels.append(ts("Member connect failures and breaker transitions", [
    (f'sum by (member) (rate(zkgate_member_connect_failures_total{{{sel}}}[$__rate_interval]))', "{{member}} connect failures/s"),
    (f'sum by (ensemble, to) (increase(zkgate_breaker_transitions_total{{{sel}}}[$__rate_interval]))', "{{ensemble}} breaker to {{to}}")], x=12))
y+=8
panels.append(ts("Bytes", [
    (f'sum by (ensemble) (rate(zkgate_received_bytes_total{{{sel}}}[$__rate_interval]))', "{{ensemble}} from clients"),
    (f'sum by (ensemble) (rate(zkgate_sent_bytes_total{{{sel}}}[$__rate_interval]))', "{{ensemble}} to clients")], unit="Bps", x=0))
panels.append(ts("Watch events and decode errors", [
    (f'sum by (ensemble, type) (rate(zkgate_watch_events_total{{{sel}}}[$__rate_interval]))', "{{ensemble}} {{type}}"),
    (f'sum by (ensemble) (rate(zkgate_decode_errors_total{{{sel}}}[$__rate_interval]))', "{{ensemble}} decode errors")], x=12))
dash={"title":"zkgate","uid":"zkgate","schemaVersion":39,"version":1,"editable":True,"refresh":"10s",
 "time":{"from":"now-1h","to":"now"},"tags":["zookeeper","zkgate"],
 "description":"zkgate: ZooKeeper proxy with circuit breaking. Metrics from zkgate's /metrics.",
 "templating":{"list":[
   {"name":"datasource","type":"datasource","query":"prometheus","label":"Data source"},
   {"name":"instance","type":"query","datasource":{"type":"prometheus","uid":"${datasource}"},"query":"label_values(zkgate_build_info, instance)","includeAll":True,"multi":True,"current":{"text":"All","value":"$__all"},"allValue":".*","refresh":2},
   {"name":"ensemble","type":"query","datasource":{"type":"prometheus","uid":"${datasource}"},"query":"label_values(zkgate_requests_total, ensemble)","includeAll":True,"multi":True,"current":{"text":"All","value":"$__all"},"allValue":".*","refresh":2}]},
 "panels":panels}
json.dump(dash, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'zkgate.json'), 'w'), indent=2)

